"use strict";
// A partner's Node back end using openid-client exactly as docs/partners.md configures it,
// run against our provider by tests/oidc/test_rp_libraries.py.
//
// One JSON object on stdin, one JSON object on stdout. Two steps, as a partner's two routes:
//   {"step": "start", "issuer", "client_id", "redirect_uri", "client_secret" | "private_jwk"}
//     -> {"url", "code_verifier", "state", "nonce"}   (the sign-in route; PAR when keys are used)
//   {"step": "callback", ...the same..., "callback_url", "checks": {"code_verifier", "state", "nonce"}}
//     -> {"claims", "userinfo", "token_type", "scope", "expires_in"}   (the callback route)
// Any failure (a library check that refuses the answer, an HTTP error) prints
// {"error": {"name", "message"}} and exits with status 1.

const { Issuer, generators } = require("openid-client");

async function makeClient(config) {
  const issuer = await Issuer.discover(`${config.issuer}/.well-known/openid-configuration`);
  if (config.private_jwk) {
    // The example of the docs: private_key_jwt (ES256), and every request pushed (PAR).
    return new issuer.Client(
      {
        client_id: config.client_id,
        redirect_uris: [config.redirect_uri],
        response_types: ["code"],
        id_token_signed_response_alg: "RS256",
        token_endpoint_auth_method: "private_key_jwt",
        token_endpoint_auth_signing_alg: "ES256",
      },
      { keys: [config.private_jwk] },
    );
  }
  // "With a secret instead of keys" in the docs.
  return new issuer.Client({
    client_id: config.client_id,
    client_secret: config.client_secret,
    redirect_uris: [config.redirect_uri],
    response_types: ["code"],
    id_token_signed_response_alg: "RS256",
    token_endpoint_auth_method: "client_secret_basic",
  });
}

async function start(config) {
  const client = await makeClient(config);
  const code_verifier = generators.codeVerifier();
  const params = {
    scope: "openid profile email",
    code_challenge: generators.codeChallenge(code_verifier),
    code_challenge_method: "S256",
    state: generators.state(),
    nonce: generators.nonce(),
  };
  let url;
  if (config.private_jwk) {
    const { request_uri } = await client.pushedAuthorizationRequest(params); // POST /par
    url = client.authorizationUrl({ request_uri });
  } else {
    url = client.authorizationUrl(params);
  }
  return { url, code_verifier, state: params.state, nonce: params.nonce };
}

async function callback(config) {
  const client = await makeClient(config);
  const { code_verifier, state, nonce } = config.checks;
  const tokens = await client.callback(config.redirect_uri, client.callbackParams(config.callback_url), {
    code_verifier,
    state,
    nonce,
  });
  const claims = tokens.claims();
  const userinfo = await client.userinfo(tokens); // GET /userinfo
  return {
    claims,
    userinfo,
    token_type: tokens.token_type,
    scope: tokens.scope,
    expires_in: tokens.expires_in,
  };
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

async function main() {
  const config = await readStdin();
  const steps = { start, callback };
  if (!steps[config.step]) throw new Error(`unknown step ${config.step}`);
  return steps[config.step](config);
}

main().then(
  (result) => {
    process.stdout.write(`${JSON.stringify(result)}\n`);
  },
  (err) => {
    const error = { name: err.name, message: err.message };
    if (err.error) error.error = err.error;
    if (err.error_description) error.error_description = err.error_description;
    process.stdout.write(`${JSON.stringify({ error })}\n`);
    process.exitCode = 1;
  },
);
