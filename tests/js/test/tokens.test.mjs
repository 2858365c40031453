// The token service with the real JavaScript clients (issue 14): @azure/identity's
// ClientSecretCredential, ClientCertificateCredential and UsernamePasswordCredential, and
// @azure/msal-node's confidential client (secret, certificate with PS256 and RS256 assertions)
// and public client (ROPC, then the refresh token); every token verified with jose through the
// discovery document and the JWKS, as any OIDC relying party would.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import {
  AuthenticationRequiredError,
  ClientCertificateCredential,
  ClientSecretCredential,
  UsernamePasswordCredential,
} from "@azure/identity";
import { ConfidentialClientApplication, PublicClientApplication } from "@azure/msal-node";
import { createRemoteJWKSet, jwtVerify } from "jose";

import {
  ARM,
  ARM_SCOPE,
  AZ_CLI_CLIENT_ID,
  GRAPH_SCOPE,
  cliLoginSp,
  logged,
  makeCertificate,
  rejects,
  runCli,
  startServer,
  uniqueName,
} from "../lib/support.mjs";

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.stop();
});

/** Verifies signature (keys from the discovery document's jwks_uri), audience, issuer, times. */
async function verify(token, audience = ARM) {
  const discovery = await (await fetch(`${server.url}/${server.tenantId}/v2.0/.well-known/openid-configuration`)).json();
  const keys = createRemoteJWKSet(new URL(discovery.jwks_uri));
  const { payload, protectedHeader } = await jwtVerify(token, keys, {
    audience,
    issuer: `${server.url}/${server.tenantId}/`,
    algorithms: ["RS256"],
    requiredClaims: ["exp", "iat", "nbf"],
    clockTolerance: 5,
  });
  assert.equal(protectedHeader.alg, "RS256");
  assert.ok(protectedHeader.kid, "the header names its key");
  return payload;
}

function secretCredential(clientId = server.clientId, secret = server.clientSecret) {
  return new ClientSecretCredential(server.tenantId, clientId, secret, {
    authorityHost: server.url,
    disableInstanceDiscovery: true,
  });
}

describe("@azure/identity", () => {
  test("ClientSecretCredential gets an ARM token that verifies with the published keys", logged(async () => {
    const access = await secretCredential().getToken(ARM_SCOPE);
    assert.ok(access.expiresOnTimestamp > Date.now() + 50 * 60_000, "an hour's token");
    const claims = await verify(access.token);
    assert.equal(claims.appid, server.clientId);
    assert.equal(claims.tid, server.tenantId);
    assert.equal(claims.idtyp, "app");
    assert.equal(claims.appidacr, "1");
  }));

  test("ClientSecretCredential gets a Graph token", logged(async () => {
    const access = await secretCredential().getToken(GRAPH_SCOPE);
    const claims = await verify(access.token, "https://graph.microsoft.com");
    assert.equal(claims.appid, server.clientId);
  }));

  // @azure/identity 4 turns every MSAL ServerError into AuthenticationRequiredError whose message
  // carries Entra's error and description (msal/utils.js handleMsalError).
  test("a wrong secret surfaces AuthenticationRequiredError with invalid_client and AADSTS7000215", logged(async () => {
    const error = await rejects(secretCredential(server.clientId, "not-the-secret").getToken(ARM_SCOPE));
    assert.ok(error instanceof AuthenticationRequiredError, `${error.name}: ${error.message}`);
    assert.match(error.message, /^invalid_client: .*Description: AADSTS7000215: Invalid client secret provided\./);
  }));

  test("ClientCertificateCredential (RS256 assertion with x5t), also sending the chain (x5c)", logged(async () => {
    const cert = makeCertificate(uniqueName("js-cert"));
    const cli = cliLoginSp(server);
    const sp = runCli(cli, ["ad", "sp", "create-for-rbac", "--name", uniqueName("js-cert-sp"), "--cert", `@${cert.certPath}`]).json();
    for (const sendCertificateChain of [false, true]) {
      const credential = new ClientCertificateCredential(
        server.tenantId,
        sp.appId,
        { certificatePath: cert.combinedPath },
        { authorityHost: server.url, disableInstanceDiscovery: true, sendCertificateChain },
      );
      const claims = await verify((await credential.getToken(ARM_SCOPE)).token);
      assert.equal(claims.appid, sp.appId);
      assert.equal(claims.appidacr, "2", "a certificate credential");
    }
  }));

  test("UsernamePasswordCredential through the Azure CLI's public client; a wrong password is AADSTS50126", logged(async () => {
    const credential = new UsernamePasswordCredential(server.tenantId, AZ_CLI_CLIENT_ID, server.adminUsername, server.adminPassword, {
      authorityHost: server.url,
      disableInstanceDiscovery: true,
    });
    const claims = await verify((await credential.getToken(ARM_SCOPE)).token);
    assert.equal(claims.idtyp, "user");
    assert.equal(claims.upn, server.adminUsername);
    assert.equal(claims.appid, AZ_CLI_CLIENT_ID);

    const wrong = new UsernamePasswordCredential(server.tenantId, AZ_CLI_CLIENT_ID, server.adminUsername, "wrong-password", {
      authorityHost: server.url,
      disableInstanceDiscovery: true,
    });
    const error = await rejects(wrong.getToken(ARM_SCOPE));
    assert.ok(error instanceof AuthenticationRequiredError, `${error.name}: ${error.message}`);
    assert.match(error.message, /^invalid_grant: .*Description: AADSTS50126: Error validating credentials due to invalid username or password\./);
  }));
});

describe("@azure/msal-node", () => {
  function authority(tenant = server.tenantId) {
    return `${server.url}/${tenant}`;
  }

  test("ConfidentialClientApplication.acquireTokenByClientCredential with a secret", logged(async () => {
    const app = new ConfidentialClientApplication({
      auth: {
        clientId: server.clientId,
        clientSecret: server.clientSecret,
        authority: authority(),
        knownAuthorities: [new URL(server.url).host],
      },
    });
    const result = await app.acquireTokenByClientCredential({ scopes: [ARM_SCOPE] });
    const claims = await verify(result.accessToken);
    assert.equal(claims.appid, server.clientId);
    // The second call is answered from MSAL's cache with the same token.
    const again = await app.acquireTokenByClientCredential({ scopes: [ARM_SCOPE] });
    assert.equal(again.accessToken, result.accessToken);
  }));

  test("instance discovery answered by openmi's own /common/discovery/instance", logged(async () => {
    // Without knownAuthorities MSAL asks {authority host}/common/discovery/instance only when
    // told to trust it through authorityMetadata; the cloud discovery metadata names our host.
    const discovery = await (await fetch(`${server.url}/common/discovery/instance?api-version=1.1&authorization_endpoint=${encodeURIComponent(`${authority()}/oauth2/v2.0/authorize`)}`)).json();
    const app = new ConfidentialClientApplication({
      auth: {
        clientId: server.clientId,
        clientSecret: server.clientSecret,
        authority: authority(),
        cloudDiscoveryMetadata: JSON.stringify(discovery),
      },
    });
    const result = await app.acquireTokenByClientCredential({ scopes: [ARM_SCOPE] });
    await verify(result.accessToken);
  }));

  test("certificate credential: PS256 with x5t#S256, and RS256 with x5t", logged(async () => {
    const cert = makeCertificate(uniqueName("js-msal-cert"));
    const cli = cliLoginSp(server);
    const sp = runCli(cli, ["ad", "sp", "create-for-rbac", "--name", uniqueName("js-msal-sp"), "--cert", `@${cert.certPath}`]).json();
    const variants = [
      { thumbprintSha256: cert.thumbprintSha256, privateKey: cert.keyPem, x5c: cert.certPem },
      { thumbprint: cert.thumbprintSha1, privateKey: cert.keyPem },
    ];
    for (const clientCertificate of variants) {
      const app = new ConfidentialClientApplication({
        auth: { clientId: sp.appId, clientCertificate, authority: authority(), knownAuthorities: [new URL(server.url).host] },
      });
      const result = await app.acquireTokenByClientCredential({ scopes: [ARM_SCOPE], skipCache: true });
      const claims = await verify(result.accessToken);
      assert.equal(claims.appid, sp.appId);
      assert.equal(claims.appidacr, "2");
    }
  }));

  test("PublicClientApplication: ROPC, then acquireTokenByRefreshToken", logged(async () => {
    const app = new PublicClientApplication({
      auth: { clientId: AZ_CLI_CLIENT_ID, authority: authority(), knownAuthorities: [new URL(server.url).host] },
    });
    const result = await app.acquireTokenByUsernamePassword({
      scopes: [ARM_SCOPE],
      username: server.adminUsername,
      password: server.adminPassword,
    });
    const claims = await verify(result.accessToken);
    assert.equal(claims.upn, server.adminUsername);
    const cache = JSON.parse(app.getTokenCache().serialize());
    const refreshToken = Object.values(cache.RefreshToken ?? {})[0]?.secret;
    assert.ok(refreshToken, "MSAL cached a refresh token");

    const refreshed = await app.acquireTokenByRefreshToken({ refreshToken, scopes: [ARM_SCOPE], forceCache: false });
    const refreshedClaims = await verify(refreshed.accessToken);
    assert.equal(refreshedClaims.oid, claims.oid);
  }));

  test("ROPC on the organizations authority; the refresh token redeemed at the tenant (the `az login -u` sequence)", logged(async () => {
    const host = new URL(server.url).host;
    const orgs = new PublicClientApplication({
      auth: { clientId: AZ_CLI_CLIENT_ID, authority: authority("organizations"), knownAuthorities: [host] },
    });
    const result = await orgs.acquireTokenByUsernamePassword({
      scopes: [ARM_SCOPE],
      username: server.adminUsername,
      password: server.adminPassword,
    });
    const claims = await verify(result.accessToken);
    assert.equal(claims.tid, server.tenantId);
    const cache = JSON.parse(orgs.getTokenCache().serialize());
    const refreshToken = Object.values(cache.RefreshToken ?? {})[0]?.secret;
    const tenantApp = new PublicClientApplication({
      auth: { clientId: AZ_CLI_CLIENT_ID, authority: authority(), knownAuthorities: [host] },
    });
    const refreshed = await tenantApp.acquireTokenByRefreshToken({ refreshToken, scopes: [ARM_SCOPE] });
    assert.equal((await verify(refreshed.accessToken)).oid, claims.oid);
  }));

  test("a service principal made by `openmi ad sp create-for-rbac` gets a token", logged(async () => {
    const cli = cliLoginSp(server);
    const sp = runCli(cli, ["ad", "sp", "create-for-rbac", "--name", uniqueName("js-sp")]).json();
    const app = new ConfidentialClientApplication({
      auth: { clientId: sp.appId, clientSecret: sp.password, authority: authority(sp.tenant), knownAuthorities: [new URL(server.url).host] },
    });
    const result = await app.acquireTokenByClientCredential({ scopes: [ARM_SCOPE] });
    assert.equal((await verify(result.accessToken)).appid, sp.appId);
  }));
});

describe("smart lockout (a server started with --lockout-threshold 3 --lockout-duration 2)", () => {
  let locking;
  before(async () => {
    locking = await startServer({ extraArgs: ["--lockout-threshold", "3", "--lockout-duration", "2"] });
  });
  after(async () => {
    await locking?.stop();
  });

  test("three distinct wrong passwords lock the account: the right one is AADSTS50053 (msal-node, @azure/identity) until the lock ends", logged(async () => {
    const ropc = async (password) => {
      const app = new PublicClientApplication({
        auth: { clientId: AZ_CLI_CLIENT_ID, authority: `${locking.url}/${locking.tenantId}`, knownAuthorities: [new URL(locking.url).host] },
      });
      try {
        return { result: await app.acquireTokenByUsernamePassword({ scopes: [ARM_SCOPE], username: locking.adminUsername, password }) };
      } catch (error) {
        return { error };
      }
    };
    for (const password of ["wrong-1", "wrong-1", "wrong-2"]) {
      assert.match((await ropc(password)).error?.errorMessage ?? "", /AADSTS50126/);
    }
    assert.ok((await ropc(locking.adminPassword)).result?.accessToken, "two distinct wrong passwords do not lock");
    for (const password of ["wrong-3", "wrong-4", "wrong-5"]) {
      assert.match((await ropc(password)).error?.errorMessage ?? "", /AADSTS50126/);
    }
    const locked = (await ropc(locking.adminPassword)).error;
    assert.equal(locked?.errorCode, "invalid_grant", String(locked));
    assert.match(locked.errorMessage, /AADSTS50053: The account is locked/);

    const credential = new UsernamePasswordCredential(locking.tenantId, AZ_CLI_CLIENT_ID, locking.adminUsername, locking.adminPassword, {
      authorityHost: locking.url,
      disableInstanceDiscovery: true,
    });
    const error = await rejects(credential.getToken(ARM_SCOPE));
    assert.match(error.message, /AADSTS50053/);

    let unlocked;
    for (let attempt = 0; attempt < 12 && !unlocked; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      unlocked = (await ropc(locking.adminPassword)).result;
    }
    assert.ok(unlocked?.accessToken, "the lock ends after its duration");
  }));
});
