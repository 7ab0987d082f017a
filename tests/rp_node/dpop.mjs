// A public client (mobile or single-page app) using DPoP (RFC 9449) with oauth4webapi, run
// against our provider by tests/oidc/test_dpop_live.py.
//
// Line-oriented JSON on stdin/stdout:
//   in:  {"issuer", "client_id", "redirect_uri"}
//   out: {"url"}                       the authorization URL (PKCE S256, dpop_jkt)
//   in:  {"callback_url"}              where the resident's browser was sent back
//   out: {"token_type", "access_token", "jkt", "userinfo", "refreshed_token_type",
//         "userinfo_proof", "private_jwk", "nonce_retries"}
// Any failure prints {"error": {"name", "message", ...}} and exits with status 1.

import * as oauth from "oauth4webapi";
import * as readline from "node:readline";

const lines = readline.createInterface({ input: process.stdin });
const iterator = lines[Symbol.asyncIterator]();
async function readJson() {
  const { value } = await iterator.next();
  return JSON.parse(value);
}
function write(value) {
  process.stdout.write(JSON.stringify(value) + "\n");
}

const insecure = { [oauth.allowInsecureRequests]: true }; // the test provider listens on http

let nonceRetries = 0;
// RFC 9449 §8/§9: the server asks for a nonce (use_dpop_nonce); the DPoP handle keeps the
// DPoP-Nonce it answered with, and the request is made again once.
async function withNonceRetry(request, process) {
  try {
    return await process(await request());
  } catch (err) {
    if (oauth.isDPoPNonceError(err)) {
      nonceRetries += 1;
      return await process(await request());
    }
    throw err;
  }
}

async function main() {
  const config = await readJson();
  const issuer = new URL(config.issuer);
  const as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, insecure));
  const client = { client_id: config.client_id };
  const clientAuth = oauth.None();

  const keyPair = await oauth.generateKeyPair("ES256", { extractable: true });
  let lastUserinfoProof;
  const DPoP = oauth.DPoP(client, keyPair);
  const jkt = await DPoP.calculateThumbprint();

  const codeVerifier = oauth.generateRandomCodeVerifier();
  const state = oauth.generateRandomState();
  const url = new URL(as.authorization_endpoint);
  url.searchParams.set("client_id", client.client_id);
  url.searchParams.set("redirect_uri", config.redirect_uri);
  url.searchParams.set("response_type", "code");
  url.searchParams.set("scope", "openid profile email");
  url.searchParams.set("code_challenge", await oauth.calculatePKCECodeChallenge(codeVerifier));
  url.searchParams.set("code_challenge_method", "S256");
  url.searchParams.set("state", state);
  url.searchParams.set("dpop_jkt", jkt); // RFC 9449 §10: the code is bound to this key
  write({ url: url.href });

  const { callback_url } = await readJson();
  const params = oauth.validateAuthResponse(as, client, new URL(callback_url), state);

  const tokens = await withNonceRetry(
    () =>
      oauth.authorizationCodeGrantRequest(as, client, clientAuth, params, config.redirect_uri, codeVerifier, {
        DPoP,
        ...insecure,
      }),
    (response) => oauth.processAuthorizationCodeResponse(as, client, response, { requireIdToken: true }),
  );
  const sub = oauth.getValidatedIdTokenClaims(tokens).sub;

  // Records the DPoP header the library sent to userinfo, for the replay test.
  const recording = {
    DPoP,
    ...insecure,
    [oauth.customFetch]: (input, init) => {
      lastUserinfoProof = new Headers(init.headers).get("dpop");
      return fetch(input, init);
    },
  };
  // The refresh token is bound to the key (public client): refreshed with a proof by it.
  const refreshed = await withNonceRetry(
    () => oauth.refreshTokenGrantRequest(as, client, clientAuth, tokens.refresh_token, { DPoP, ...insecure }),
    (response) => oauth.processRefreshTokenResponse(as, client, response),
  );
  const userinfo = await withNonceRetry(
    () => oauth.userInfoRequest(as, client, refreshed.access_token, recording),
    (response) => oauth.processUserInfoResponse(as, client, sub, response),
  );

  write({
    token_type: tokens.token_type,
    access_token: tokens.access_token,
    jkt,
    userinfo,
    refreshed_token_type: refreshed.token_type,
    refreshed_access_token: refreshed.access_token,
    userinfo_proof: lastUserinfoProof,
    private_jwk: await crypto.subtle.exportKey("jwk", keyPair.privateKey),
    nonce_retries: nonceRetries,
  });
}

main().then(
  () => process.exit(0),
  (err) => {
    write({ error: { name: err.name, message: err.message, code: err.code, error: err.error } });
    process.exit(1);
  },
);
