// Engram from Node.js: token -> Remember -> Recall over gRPC, with
// @grpc/grpc-js and @grpc/proto-loader reading proto/ at run time.
//
//   scripts/setup-clients.sh                      # npm ci in clients/node
//   export ENGRAM_ADDR=127.0.0.1:50051
//   export ENGRAM_TOKEN=$(engram token --org org_demo --user alice)
//   node --test clients/node/client.test.js
//
// crates/engram/tests/clients.rs runs this file against a real
// `engram serve`.

'use strict';

const assert = require('node:assert/strict');
const path = require('node:path');
const { randomUUID } = require('node:crypto');
const { after, test } = require('node:test');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTO_DIR = process.env.ENGRAM_PROTO_DIR || path.join(__dirname, '..', '..', 'proto');
const ADDR = process.env.ENGRAM_ADDR || '127.0.0.1:50051';
const TOKEN = process.env.ENGRAM_TOKEN;
if (!TOKEN) {
  console.error('ENGRAM_TOKEN is not set: mint one with `engram token --org O --user U`');
  process.exit(2);
}

// google/protobuf/*.proto (Struct, Timestamp) come bundled with proto-loader.
const definition = protoLoader.loadSync(
  ['engram/v1/ingest.proto', 'engram/v1/recall.proto'],
  { includeDirs: [PROTO_DIR], keepCase: true, longs: String, enums: String, defaults: true },
);
const { engram } = grpc.loadPackageDefinition(definition);
const ingest = new engram.v1.IngestService(ADDR, grpc.credentials.createInsecure());
const recall = new engram.v1.RecallService(ADDR, grpc.credentials.createInsecure());

// The token's org_id claim is the tenant every scope must name.
const ORG = JSON.parse(Buffer.from(TOKEN.split('.')[1], 'base64url')).org_id;
const SESSION = `node-${randomUUID().slice(0, 8)}`;

function auth(token) {
  const md = new grpc.Metadata();
  if (token) md.set('authorization', `Bearer ${token}`);
  return md;
}

// Promise wrapper around a unary call, with a 30 s deadline.
function call(client, method, request, metadata) {
  return new Promise((resolve, reject) => {
    client[method](request, metadata, { deadline: Date.now() + 30_000 }, (err, res) =>
      err ? reject(err) : resolve(res));
  });
}

// An assert.rejects check that names the status it got.
function expectCode(code) {
  return (err) => {
    assert.equal(err.code, code, `expected status ${code}, got ${err.code}: ${err.details}`);
    return true;
  };
}

test('Remember, then Recall finds the turn', async () => {
  const remembered = await call(ingest, 'Remember', {
    scope: { org_id: ORG, session_id: SESSION },
    turns: [{ role: 'user', text: "I'm allergic to shellfish.", timestamp: '2026-05-08T14:00:00Z' }],
  }, auth(TOKEN));
  assert.equal(remembered.active_fragment_ids.length, 1, 'one fragment per turn');
  const [fragmentId] = remembered.active_fragment_ids;

  const recalled = await call(recall, 'Recall', {
    scope: { org_id: ORG, session_id: SESSION },
    q: 'any food restrictions?',
    top_k: 5,
  }, auth(TOKEN));
  const hit = recalled.hits.turns.find((h) => h.id === fragmentId);
  assert.ok(hit, `the allergy turn is not among the hits: ${JSON.stringify(recalled.hits.turns)}`);
  assert.match(hit.text, /allergic to shellfish/);
  console.log(`recalled ${hit.text} (score ${hit.score.toFixed(3)}, confidence ${recalled.confidence.toFixed(2)})`);
});

test('a call without the token is UNAUTHENTICATED', async () => {
  await assert.rejects(
    call(recall, 'Recall', { scope: { org_id: ORG }, q: 'any food restrictions?' }, auth(null)),
    expectCode(grpc.status.UNAUTHENTICATED),
  );
});

test('a turn with empty text is INVALID_ARGUMENT', async () => {
  await assert.rejects(
    call(ingest, 'Remember', {
      scope: { org_id: ORG, session_id: SESSION },
      turns: [{ role: 'user', text: '', timestamp: '2026-05-08T14:00:00Z' }],
    }, auth(TOKEN)),
    expectCode(grpc.status.INVALID_ARGUMENT),
  );
});

after(() => {
  ingest.close();
  recall.close();
});
