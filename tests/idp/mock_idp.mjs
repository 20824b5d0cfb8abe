// A local OpenID Connect provider for the OIDC login test: npm's oauth2-mock-server on loopback.
// usage: node mock_idp.mjs MODULE_DIR PORT USERNAME
// Every ID token names USERNAME in `preferred_username`; the test points web.oidc.issuer here.
import path from "node:path";
import { pathToFileURL } from "node:url";

const [moduleDir, port, username] = process.argv.slice(2);
const entry = path.join(moduleDir, "node_modules", "oauth2-mock-server", "dist", "index.mjs");
const { OAuth2Server } = await import(pathToFileURL(entry).href);

const server = new OAuth2Server();
await server.issuer.keys.generate("RS256");
server.service.on("beforeTokenSigning", (token) => {
  token.payload.preferred_username = username;
});
await server.start(Number(port), "127.0.0.1");
console.log(`ready ${server.issuer.url}`);
process.on("SIGTERM", async () => { await server.stop(); process.exit(0); });
