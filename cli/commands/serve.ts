/**
 * `vit serve --run DIR | --checkpoint F [--port 8080] [--host 127.0.0.1] [--cors ORIGIN]`: the
 * model behind an HTTP API and a web page (src/serve/). One JSON line per request on stdout,
 * everything else on stderr. SIGTERM answers the requests in flight and exits 0 (what process
 * managers expect); SIGINT does the same and exits 130, as every command does; a second signal
 * quits at once.
 */
import type { AddressInfo } from "node:net";
import { type Command, InvalidArgumentError } from "commander";
import { InterruptedError, UsageError } from "../../src/errors.js";
import type { ServeOptions } from "../../src/serve/options.js";
import { addModelSourceOptions, type ModelSourceFlags } from "../model_source.js";
import { positiveInt, startEngine } from "../options.js";

type ServeFlags = ModelSourceFlags & Partial<ServeOptions>;

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) {
    throw new InvalidArgumentError(`expected a port number 0..65535, got "${value}"`);
  }
  return n;
}

function milliseconds(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0)
    throw new InvalidArgumentError(`expected milliseconds >= 0, got "${value}"`);
  return n;
}

export function register(program: Command): void {
  addModelSourceOptions(
    program.command("serve").description("serve the model over HTTP: an API and a web page"),
  )
    .option("--host <address>", "address to listen on (loopback unless you say otherwise)", "127.0.0.1")
    .option("--port <n>", "port to listen on (0: any free port)", port, 8080)
    .option("--cors <origin>", "let pages from this origin call the API (default: no CORS)")
    .option("--topk <k>", "classes per image when a request gives no ?topk=", positiveInt, 5)
    .option("--max-batch <n>", "images per forward pass", positiveInt, 32)
    .option("--batch-window-ms <ms>", "how long a batch waits for more images", milliseconds, 5)
    .option("--max-queue <n>", "images in flight at once; beyond it requests get 503", positiveInt, 128)
    .option("--timeout-ms <ms>", "requests not answered in this time get 504", positiveInt, 30_000)
    .option("--max-image-bytes <n>", "bytes per image (raw body over it: 413)", positiveInt, 16 * 1024 * 1024)
    .option("--max-images <n>", "images per multipart request (more: 413)", positiveInt, 32)
    .option("--max-pixels <n>", "decoded pixels per image (more: 422)", positiveInt, 40_000_000)
    .action(async (flags: ServeFlags) => {
      const [{ ServeOptionsSchema }, { createServer }] = await Promise.all([
        import("../../src/serve/options.js"),
        import("../../src/serve/server.js"),
      ]);
      const parsed = ServeOptionsSchema.safeParse({
        host: flags.host,
        port: flags.port,
        cors: flags.cors ?? null,
        topk: flags.topk,
        maxBatch: flags.maxBatch,
        batchWindowMs: flags.batchWindowMs,
        maxQueue: flags.maxQueue,
        timeoutMs: flags.timeoutMs,
        maxImageBytes: flags.maxImageBytes,
        maxImages: flags.maxImages,
        maxPixels: flags.maxPixels,
      });
      if (!parsed.success) throw new UsageError(`vit serve: ${parsed.error.issues[0].message}`);
      const options = parsed.data;
      const [{ resolveWeightsFile }, { loadServedModel }, { describeEngine }] = await Promise.all([
        import("../../src/weights/model_source.js"),
        import("../../src/serve/model.js"),
        import("../../src/engines/select.js"),
      ]);
      const source = { ...flags, preset: flags.model };
      resolveWeightsFile(source); // usage errors before the engine spends time starting
      const choice = await startEngine(flags.backend ?? "auto", {
        threads: flags.threads,
        device: flags.device,
      });
      const im = await loadServedModel(source, choice);
      const engine = describeEngine(choice);
      const server = await createServer({
        model: im,
        engine,
        options,
        log: (line) => process.stdout.write(line),
      });
      const quit = () => process.exit(130);
      let signal: NodeJS.Signals;
      try {
        await server.app.listen({ host: options.host, port: options.port });
        const { address, port: bound } = server.app.server.address() as AddressInfo;
        const host = address.includes(":") ? `[${address}]` : address;
        process.stderr.write(
          `vit serve: ${im.weightsFile} on ${engine}, listening on http://${host}:${bound}/\n`,
        );
        signal = await new Promise<NodeJS.Signals>((resolve) => {
          process.once("SIGINT", resolve);
          process.once("SIGTERM", resolve);
        });
        process.once("SIGINT", quit);
        process.once("SIGTERM", quit);
        process.stderr.write(
          `${signal}: answering the ${server.batcher.inFlight} images in flight, then stopping (again to quit now)\n`,
        );
      } finally {
        await server.close();
        await im.dispose();
      }
      process.off("SIGINT", quit);
      process.off("SIGTERM", quit);
      if (signal === "SIGINT") throw new InterruptedError("vit serve: stopped by SIGINT");
      process.stderr.write("vit serve: stopped\n");
    });
}
