// node-oidc-provider v9 with an SQLite store: the reference of issue 14's benchmark.
//
//     taskset -c 0 node bench/reference_node/server.js CONFIG.json
//
// Started by `bench/oidc.py --reference node` (bench/README.md, "node-oidc-provider measured
// side by side"), which writes CONFIG.json: port, issuer, SQLite file, the clients (as our
// bench registers them) and the one resident account. Configured as a partner would run it
// in production: client_secret_basic clients, PKCE S256 required, exact redirect URIs,
// refresh tokens rotated, introspection and userinfo enabled, RSA-3072 and P-256 signing
// keys, behind a TLS-terminating proxy (X-Forwarded-Proto). Access tokens are node's default
// opaque tokens (stored, looked up at userinfo and introspection).
//
// Not a product: GET /interaction/:uid signs the configured account in and grants what the
// client asked, without a page, so that the benchmark can set up a browser session and a
// grant once; the measured operations never reach it (an authorize that needs an
// interaction is counted as an error by the load generator).

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

import Database from 'better-sqlite3';
import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));

// --- store: one SQLite table keyed by (model, id), WAL ---------------------------------------

const db = new Database(config.sqlite);
db.pragma('journal_mode = WAL');
db.pragma('synchronous = NORMAL');
db.exec(`
  CREATE TABLE IF NOT EXISTS oidc_models (
    model TEXT NOT NULL,
    id TEXT NOT NULL,
    payload TEXT NOT NULL,
    grant_id TEXT,
    user_code TEXT,
    uid TEXT,
    expires_at INTEGER,
    consumed_at INTEGER,
    PRIMARY KEY (model, id)
  );
  CREATE INDEX IF NOT EXISTS oidc_models_grant_id ON oidc_models (grant_id);
  CREATE INDEX IF NOT EXISTS oidc_models_uid ON oidc_models (model, uid);
  CREATE INDEX IF NOT EXISTS oidc_models_user_code ON oidc_models (model, user_code);
`);

const statements = {
  upsert: db.prepare(`
    INSERT INTO oidc_models (model, id, payload, grant_id, user_code, uid, expires_at)
    VALUES (?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (model, id) DO UPDATE SET
      payload = excluded.payload, grant_id = excluded.grant_id, user_code = excluded.user_code,
      uid = excluded.uid, expires_at = excluded.expires_at`),
  find: db.prepare('SELECT payload, expires_at, consumed_at FROM oidc_models WHERE model = ? AND id = ?'),
  findByUid: db.prepare('SELECT payload, expires_at, consumed_at FROM oidc_models WHERE model = ? AND uid = ?'),
  findByUserCode: db.prepare(
    'SELECT payload, expires_at, consumed_at FROM oidc_models WHERE model = ? AND user_code = ?',
  ),
  consume: db.prepare('UPDATE oidc_models SET consumed_at = ? WHERE model = ? AND id = ?'),
  destroy: db.prepare('DELETE FROM oidc_models WHERE model = ? AND id = ?'),
  revokeByGrantId: db.prepare('DELETE FROM oidc_models WHERE grant_id = ?'),
};

const now = () => Math.floor(Date.now() / 1000);

function unpack(row) {
  if (!row || (row.expires_at !== null && row.expires_at <= now())) return undefined;
  const payload = JSON.parse(row.payload);
  if (row.consumed_at !== null) payload.consumed = row.consumed_at;
  return payload;
}

class SqliteAdapter {
  constructor(model) {
    this.model = model;
  }

  async upsert(id, payload, expiresIn) {
    statements.upsert.run(
      this.model,
      id,
      JSON.stringify(payload),
      payload.grantId ?? null,
      payload.userCode ?? null,
      payload.uid ?? null,
      expiresIn ? now() + expiresIn : null,
    );
  }

  async find(id) {
    return unpack(statements.find.get(this.model, id));
  }

  async findByUid(uid) {
    return unpack(statements.findByUid.get(this.model, uid));
  }

  async findByUserCode(userCode) {
    return unpack(statements.findByUserCode.get(this.model, userCode));
  }

  async consume(id) {
    statements.consume.run(now(), this.model, id);
  }

  async destroy(id) {
    statements.destroy.run(this.model, id);
  }

  async revokeByGrantId(grantId) {
    statements.revokeByGrantId.run(grantId);
  }
}

// --- keys: RSA-3072 and P-256, generated at start ------------------------------------------

function signingKey(kid, alg, type, options) {
  const { privateKey } = generateKeyPairSync(type, options);
  return { ...privateKey.export({ format: 'jwk' }), kid, alg, use: 'sig' };
}

const jwks = {
  keys: [
    signingKey('rsa-3072', 'RS256', 'rsa', { modulusLength: 3072 }),
    signingKey('p-256', 'ES256', 'ec', { namedCurve: 'P-256' }),
  ],
};

// --- the provider ------------------------------------------------------------------------------

const account = config.account;

const provider = new Provider(config.issuer, {
  adapter: SqliteAdapter,
  clients: config.clients,
  jwks,
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['given_name', 'family_name'],
  },
  async findAccount(ctx, sub) {
    if (sub !== account.sub) return undefined;
    return {
      accountId: sub,
      async claims() {
        return { ...account };
      },
    };
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    userinfo: { enabled: true },
  },
  enabledJWA: { idTokenSigningAlgValues: ['RS256', 'ES256'] },
  pkce: { required: () => true },
  // Ours issues a refresh token with every code exchange of a client allowed the grant;
  // node's default asks for the offline_access scope (and prompt=consent) first.
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: true,
  // Lifetimes as ours (config/settings.py): codes 60 s, access and ID tokens 10 min,
  // refresh tokens 14 days (the session and grant as long).
  ttl: {
    AuthorizationCode: 60,
    AccessToken: 600,
    ClientCredentials: 600,
    IdToken: 600,
    RefreshToken: 14 * 24 * 3600,
    Grant: 14 * 24 * 3600,
    Session: 14 * 24 * 3600,
    Interaction: 3600,
  },
  interactions: { url: async (ctx, interaction) => `/interaction/${interaction.uid}` },
});
provider.proxy = true; // behind a TLS-terminating proxy, as ours (X-Forwarded-Proto: https)

provider.use(async (ctx, next) => {
  if (ctx.path === '/healthz' || ctx.path === '/readyz') {
    ctx.body = { status: 'ok' };
    return;
  }
  const match = /^\/interaction\/([^/]+)$/.exec(ctx.path);
  if (!match || ctx.method !== 'GET') {
    await next();
    return;
  }
  // Set-up only (see the top of this file): sign the account in, grant what is missing.
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  const { prompt, params, session } = details;
  let result;
  if (prompt.name === 'login') {
    result = { login: { accountId: account.sub } };
  } else if (prompt.name === 'consent') {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const missing = prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    result = { consent: { grantId: await grant.save() } };
  } else {
    ctx.throw(400, `unexpected prompt ${prompt.name}`);
  }
  const returnTo = await provider.interactionResult(ctx.req, ctx.res, result, {
    mergeWithLastSubmission: true,
  });
  ctx.status = 303;
  ctx.redirect(returnTo);
});

const server = createServer(provider.callback());
server.keepAliveTimeout = 75_000;
server.listen(config.port, '127.0.0.1', () => {
  console.log(`node-oidc-provider ${config.issuer} on 127.0.0.1:${config.port}`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close();
    db.close();
    process.exit(0);
  });
}
