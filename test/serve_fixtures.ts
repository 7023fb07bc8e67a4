/**
 * What the serve tests (and the docs screenshot script) share: a run folder holding a tiny
 * random-weight checkpoint made on the spot, and a server on it listening on a free loopback port.
 */
import type { AddressInfo } from "node:net";
import * as path from "node:path";
import { writeRandomRun } from "../scripts/random_run.js";
import { type Config, resolveConfig } from "../src/config/index.js";
import { selectEngine } from "../src/engines/select.js";
import { loadServedModel } from "../src/serve/model.js";
import { type ServeOptions, ServeOptionsSchema } from "../src/serve/options.js";
import { createServer, type Server } from "../src/serve/server.js";

export const S = 16;

export function tinyConfig(): Config {
  return resolveConfig(
    {
      name: "tiny",
      model: {
        img_size: S,
        patch_size: 4,
        embed_dim: 32,
        depth: 2,
        num_heads: 2,
        mlp_ratio: 2,
        drop_path_rate: 0,
      },
      data: { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5], crop_pct: 0.875 },
    },
    { source: "test" },
  );
}

/** `dir/runs/tiny` with a best checkpoint of a random model over `classes`; returns the run folder. */
export function writeTinyRun(dir: string, classes: string[], seed = 1): string {
  return writeRandomRun(path.join(dir, "runs", "tiny"), tinyConfig(), classes, { seed });
}

export interface Running extends Server {
  url: string;
  /** The request log lines written so far, parsed. */
  logs: Record<string, unknown>[];
}

/** A server on `run`'s model on tfjs cpu, listening on 127.0.0.1 at a free port. */
export async function startServer(run: string, options: Partial<ServeOptions> = {}): Promise<Running> {
  const model = await loadServedModel({ run }, await selectEngine("cpu"));
  const logs: Record<string, unknown>[] = [];
  const server = await createServer({
    model,
    engine: "cpu",
    options: ServeOptionsSchema.parse({ port: 0, ...options }),
    log: (line) => logs.push(JSON.parse(line)),
  });
  await server.app.listen({ host: "127.0.0.1", port: 0 });
  const { port } = server.app.server.address() as AddressInfo;
  return {
    ...server,
    url: `http://127.0.0.1:${port}`,
    logs,
    async close() {
      await server.close();
      await model.dispose();
    },
  };
}
