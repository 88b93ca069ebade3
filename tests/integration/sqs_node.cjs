// SQS by the AWS SDK for JavaScript v3 (@aws-sdk/client-sqs, installed by
// scripts/install-aws-sdk-js.sh; NODE_PATH names its node_modules), for
// tests/integration/test_sqs.py. The SDK speaks the JSON protocol and
// verifies MD5OfMessageBody of every send and MD5OfBody of every receive: a
// wrong digest fails the command. Prints one line of
// JSON: what it saw, or {"error": name, "message": ...}.
//   node sqs_node.cjs URL
const sqs = require("@aws-sdk/client-sqs");

async function main() {
  const [url] = process.argv.slice(2);
  const client = new sqs.SQSClient({
    endpoint: url,
    region: "us-east-1",
    credentials: { accessKeyId: "x", secretAccessKey: "y" },
    maxAttempts: 1,
  });
  const send = (c) => client.send(c);
  const { QueueUrl } = await send(new sqs.CreateQueueCommand({ QueueName: "js" }));
  const attrs = {
    color: { DataType: "String", StringValue: "red" },
    blob: { DataType: "Binary", BinaryValue: Uint8Array.from([0, 1, 2, 3]) },
  };
  const one = await send(new sqs.SendMessageCommand({
    QueueUrl, MessageBody: "from js", MessageAttributes: attrs,
  }));
  const batch = await send(new sqs.SendMessageBatchCommand({
    QueueUrl,
    Entries: [
      { Id: "a", MessageBody: "ä" },
      { Id: "b", MessageBody: "b", MessageAttributes: { n: { DataType: "Number", StringValue: "7" } } },
    ],
  }));
  const got = await send(new sqs.ReceiveMessageCommand({
    QueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
    MessageAttributeNames: ["All"], MessageSystemAttributeNames: ["ApproximateReceiveCount"],
  }));
  const del = await send(new sqs.DeleteMessageBatchCommand({
    QueueUrl,
    Entries: got.Messages.map((m, i) => ({ Id: `d${i}`, ReceiptHandle: m.ReceiptHandle })),
  }));
  let missing = null;
  try {
    await send(new sqs.GetQueueUrlCommand({ QueueName: "missing" }));
  } catch (e) {
    missing = e.name;
  }
  console.log(JSON.stringify({
    url: QueueUrl,
    md5attrs: one.MD5OfMessageAttributes,
    batch: batch.Successful.map((e) => e.Id),
    bodies: got.Messages.map((m) => m.Body),
    blob: Array.from(got.Messages[0].MessageAttributes.blob.BinaryValue),
    count: got.Messages[0].Attributes.ApproximateReceiveCount,
    deleted: del.Successful.length,
    missing,
  }));
}

main().catch((e) => {
  console.log(JSON.stringify({ error: e.name, message: e.message }));
});
