// A Lambda Invoke by the AWS SDK for JavaScript v3 (@aws-sdk/client-lambda,
// installed by scripts/install-aws-sdk-js.sh; NODE_PATH names its
// node_modules), for tests/integration/test_sigv4.py. Prints one line of
// JSON: {"ok": true, "status": N} or {"ok": false, "name", "status", "message"}.
//   node sigv4_node.cjs URL KEY_ID SECRET CASE
// CASE: ok; ok-qualified (a name with ':' and a Qualifier with '$', encoded
// in the path and the query); tamper-body and tamper-header (changed after signing); skew (the
// client's clock 10 min behind, one attempt); skew-retry (the same with
// retries: the SDK corrects its clock from the answer's Date header).
const { LambdaClient, InvokeCommand } = require("@aws-sdk/client-lambda");

async function main() {
  const [url, keyId, secret, kase] = process.argv.slice(2);
  const skew = kase === "skew" || kase === "skew-retry";
  const client = new LambdaClient({
    endpoint: url,
    region: "us-east-1",
    credentials: { accessKeyId: keyId, secretAccessKey: secret },
    maxAttempts: kase === "skew-retry" ? 3 : 1,
    systemClockOffset: skew ? -600000 : 0,
  });
  if (kase === "tamper-body" || kase === "tamper-header") {
    // The deserialize step sees the request after finalizeRequest signed it.
    client.middlewareStack.add(
      (next) => async (args) => {
        const req = args.request;
        if (kase === "tamper-body") {
          req.body = '{"tampered":true}';
          req.headers["content-length"] = String(Buffer.byteLength(req.body));
        } else {
          req.headers["x-amz-invocation-type"] = "Event";
        }
        return next(args);
      },
      { step: "deserialize", name: "spateTamper" },
    );
  }
  try {
    const out = await client.send(
      new InvokeCommand({
        FunctionName: kase === "ok-qualified" ? "hello:prod" : "hello",
        InvocationType: "RequestResponse",
        Qualifier: kase === "ok-qualified" ? "$LATEST" : undefined,
        Payload: Buffer.from('{"from":"node"}'),
      }),
    );
    console.log(JSON.stringify({ ok: true, status: out.$metadata.httpStatusCode }));
  } catch (e) {
    console.log(
      JSON.stringify({
        ok: false,
        name: e.name,
        status: e.$metadata ? e.$metadata.httpStatusCode : null,
        message: e.message,
      }),
    );
  }
}

main();
