// A real OAuth 2.0 authorization server for the email channel's XOAUTH2 tests: panva's
// oidc-provider (an OpenID Certified implementation, from npm), not a fake. It plays the part of
// Google's or Microsoft's token endpoint:
//
// - refresh tokens rotate on every use, and presenting a used one again is treated as theft:
//   the provider revokes the whole grant (RFC 9700 §4.14.2), as strict as any real provider;
// - access tokens live `SB_OAUTH_ACCESS_TTL` seconds (default 3600);
// - resource servers (Dovecot, the test SMTP server) check access tokens at the RFC 7662
//   introspection endpoint `/token/introspection` with HTTP Basic client credentials
//   `mailserver:mailserver-secret`; the mailbox is the token's `sub`;
// - RFC 7009 revocation at `/token/revocation` ends a grant, as a user or admin does at the
//   provider.
//
// At start it authorises the client `switchboard` (secret `switchboard-secret`) for the account
// given as the first argument, as an operator does once: the authorization-code flow through
// the provider's own login and consent pages (its development interactions), with the scopes
// `openid offline_access mail`. It then prints one JSON line on stdout:
// `{"issuer": "http://127.0.0.1:<port>", "refresh_token": "..."}` and serves until killed.
// Paths under /_test/ are this script's, not the provider's: `GET /_test/authorise` walks the
// flow again and answers `{"refresh_token": "..."}`, a new grant (the operator authorising again
// after a revocation); `GET /_test/grants` lists what the token endpoint did, in order
// (`{"grant_type", "ok", "error"}`, and `{"revoked": true}` when a grant was revoked);
// `GET /_test/browse?url=U[&user_code=C][&deny][&as=A]` is the user's browser opening U (an
// authorization request, or the device page with C to enter), signing in (as A, else as
// ACCOUNT) and consenting (or cancelling): `{"location": "<redirect away from the provider>"}`
// or `{"page": "<html>"}`.
// The client may also use the device flow (RFC 8628, `/device/auth`) and loopback redirects on
// any port.
//
// Usage: node oauth_provider.mjs ACCOUNT   (SB_OIDC_PROVIDER: the npm prefix holding
// node_modules/oidc-provider, installed by tests/run.sh from tests/node/package-lock.json)

import { createServer } from 'node:http';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

// stdout is this script's answer alone: the provider's notices go to stderr.
console.log = console.error;
console.info = console.error;
console.warn = console.error;

const account = process.argv[2];
if (!account) throw new Error('usage: oauth_provider.mjs ACCOUNT');
const prefix = process.env.SB_OIDC_PROVIDER;
if (!prefix) throw new Error('SB_OIDC_PROVIDER must name the npm prefix holding oidc-provider');
const { default: Provider } = await import(
  pathToFileURL(join(prefix, 'node_modules', 'oidc-provider', 'lib', 'index.js')).href
);

const redirect = 'http://127.0.0.1/authorised';
const server = createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'switchboard',
      client_secret: 'switchboard-secret',
      grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
      response_types: ['code'],
      // A native (installed) app: any port on the loopback address is its own (RFC 8252 §7.3),
      // as at Google and Microsoft; `switchboard oauth2` listens on one for the redirect.
      application_type: 'native',
      redirect_uris: [redirect, 'http://127.0.0.1/'],
      // As Microsoft's and Google's token endpoints take it: the secret in the form body.
      token_endpoint_auth_method: 'client_secret_post',
    },
    {
      client_id: 'mailserver',
      client_secret: 'mailserver-secret',
      grant_types: [],
      response_types: [],
      redirect_uris: [],
    },
  ],
  scopes: ['openid', 'offline_access', 'mail'],
  findAccount: async (_ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  features: {
    devInteractions: { enabled: true },
    deviceFlow: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
  },
  rotateRefreshToken: true,
  ttl: {
    AccessToken: Number(process.env.SB_OAUTH_ACCESS_TTL || 3600),
    RefreshToken: 14 * 24 * 3600,
    Grant: 14 * 24 * 3600,
    Session: 3600,
    Interaction: 600,
  },
});

/**
 * The user's browser: opens `url`, follows the provider's redirects, signs in as `as`,
 * enters `userCode` where a device code is asked for, and consents — or, with `deny`, cancels
 * at the consent page. Returns `{ location }` at the first redirect away from the provider (to
 * the app's redirect URI, with the code or the error), or `{ page }` where no form is left
 * (the device flow's "you can close this page").
 */
async function browse(url, { userCode, deny, as = account } = {}) {
  const cookies = new Map();
  const go = async (target, form) => {
    const response = await fetch(target, {
      method: form ? 'POST' : 'GET',
      redirect: 'manual',
      headers: {
        cookie: [...cookies].map(([k, v]) => `${k}=${v}`).join('; '),
        ...(form ? { 'content-type': 'application/x-www-form-urlencoded' } : {}),
      },
      body: form ? new URLSearchParams(form) : undefined,
    });
    for (const line of response.headers.getSetCookie()) {
      const [pair] = line.split(';');
      const at = pair.indexOf('=');
      cookies.set(pair.slice(0, at), pair.slice(at + 1));
    }
    return response;
  };
  let response = await go(new URL(url, issuer));
  for (let steps = 0; steps < 20; steps += 1) {
    const location = response.headers.get('location');
    if (location) {
      const next = new URL(location, issuer);
      if (next.origin !== issuer) return { location: next.href };
      response = await go(next);
      continue;
    }
    const page = await response.text();
    const form = /<form[^>]*action="([^"]*)"[^>]*>([\s\S]*?)<\/form>/.exec(page);
    if (!form) return { page };
    const action = new URL(form[1].replace(/&amp;/g, '&'), issuer);
    const fields = {};
    for (const input of form[2].matchAll(/<input[^>]*name="([^"]*)"[^>]*>/g)) {
      fields[input[1]] = /value="([^"]*)"/.exec(input[0])?.[1] ?? '';
    }
    if ('login' in fields) Object.assign(fields, { login: as, password: 'any' });
    if ('user_code' in fields && !fields.user_code) fields.user_code = userCode;
    if (fields.prompt === 'consent' && deny) {
      response = await go(new URL(`${action.pathname}/abort`, issuer));
      continue;
    }
    response = await go(action, fields);
  }
  throw new Error(`the browser went round in circles from ${url}`);
}

/** The operator authorising the client once: the authorization-code flow, to a refresh token. */
async function authorise() {
  const start = new URL('/auth', issuer);
  start.search = new URLSearchParams({
    client_id: 'switchboard',
    response_type: 'code',
    redirect_uri: redirect,
    scope: 'openid offline_access mail',
    prompt: 'consent',
  });
  const { location } = await browse(start);
  const code = location && new URL(location).searchParams.get('code');
  if (!code) throw new Error(`no code: ${location}`);
  const token = await fetch(new URL('/token', issuer), {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      code,
      redirect_uri: redirect,
      client_id: 'switchboard',
      client_secret: 'switchboard-secret',
    }),
  });
  const answer = await token.json();
  if (!answer.refresh_token) throw new Error(`no refresh token: ${JSON.stringify(answer)}`);
  return answer.refresh_token;
}

// What the token endpoint did, in order, for the tests to count refreshes and see refusals.
const grants = [];
provider.on('grant.success', (ctx) => grants.push({ grant_type: ctx.oidc.params.grant_type, ok: true }));
provider.on('grant.error', (ctx, error) => grants.push({
  grant_type: ctx.oidc.params?.grant_type, ok: false, error: error.error, detail: error.error_detail,
}));
provider.on('grant.revoked', () => grants.push({ revoked: true }));

const handle = provider.callback();
const answer = (response, body) => response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
server.on('request', (request, response) => {
  if (request.url === '/_test/authorise') {
    authorise().then(
      (refresh_token) => answer(response, { refresh_token }),
      (error) => response.writeHead(500).end(String(error.stack)),
    );
  } else if (request.url === '/_test/grants') {
    answer(response, grants);
  } else if (request.url.startsWith('/_test/browse?')) {
    const query = new URL(request.url, issuer).searchParams;
    const options = { userCode: query.get('user_code'), deny: query.has('deny'), as: query.get('as') ?? account };
    browse(query.get('url'), options).then(
      (result) => answer(response, result),
      (error) => response.writeHead(500).end(String(error.stack)),
    );
  } else {
    handle(request, response);
  }
});
process.stdout.write(`${JSON.stringify({ issuer, refresh_token: await authorise() })}\n`);
