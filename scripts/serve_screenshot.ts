/**
 * `npm run docs:screenshot -- [--run DIR --image FILE]`: the page of `vit serve` as docs/serve.md
 * shows it, at 1280x800 (docs/serve-page.png) and at phone width (docs/serve-page-phone.png), taken
 * in headless chromium with an image picked. With --run, that run's model and --image; without,
 * vit_tiny_patch16_224 with random weights and a classifier bias that ranks five made-up classes
 * (so the bars have a shape; its answers mean nothing) on a drawn picture of a bird.
 */
import * as fs from "node:fs";
import type { AddressInfo } from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import sharp from "sharp";
import { resolveConfig } from "../src/config/index.js";
import { describeEngine, selectEngine } from "../src/engines/select.js";
import { loadServedModel } from "../src/serve/model.js";
import { ServeOptionsSchema } from "../src/serve/options.js";
import { createServer } from "../src/serve/server.js";
import { launchChromium } from "./chromium.js";
import { writeRandomRun } from "./random_run.js";

const DOCS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "docs");
const CLASSES = ["goldfinch", "tabby cat", "golden retriever", "sports car", "mountain bike"];

/** A small landscape with a yellow bird on a branch, drawn here so the docs need no photo. */
function scene(): Promise<Buffer> {
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="480" height="360">
    <defs><linearGradient id="sky" x1="0" y1="0" x2="0" y2="1">
      <stop offset="0" stop-color="#7fb7e8"/><stop offset="1" stop-color="#dcefff"/></linearGradient></defs>
    <rect width="480" height="360" fill="url(#sky)"/>
    <circle cx="395" cy="70" r="36" fill="#ffe9a8"/>
    <path d="M0 250 Q120 180 240 235 T480 215 V360 H0 Z" fill="#8fbf72"/>
    <path d="M0 300 Q160 250 300 292 T480 282 V360 H0 Z" fill="#5f9a4f"/>
    <path d="M40 205 L300 170" stroke="#6b4a2f" stroke-width="9" stroke-linecap="round"/>
    <ellipse cx="205" cy="152" rx="42" ry="28" fill="#f4c81e"/>
    <circle cx="240" cy="130" r="19" fill="#f4c81e"/>
    <path d="M252 127 L272 133 L252 138 Z" fill="#e48b2b"/>
    <circle cx="244" cy="125" r="3.5" fill="#1d1d1d"/>
    <path d="M170 140 Q195 128 220 150 Q190 160 170 140 Z" fill="#222"/>
    <path d="M160 150 L128 140 L138 162 Z" fill="#222"/>
  </svg>`;
  return sharp(Buffer.from(svg)).jpeg({ quality: 90 }).toBuffer();
}

const { values: args } = parseArgs({ options: { run: { type: "string" }, image: { type: "string" } } });
if (!args.run !== !args.image) throw new Error("give --run DIR and --image FILE together, or neither");

/** The run and image to show: the ones named, or a random model and the drawn bird. */
async function subject(dir: string): Promise<{ run: string; image: string }> {
  if (args.run && args.image) return { run: args.run, image: args.image };
  const config = resolveConfig(
    { name: "demo", model: { preset: "vit_tiny_patch16_224" } },
    { source: "demo" },
  );
  const run = writeRandomRun(path.join(dir, "run"), config, CLASSES, { headBias: [2.4, 1.1, 0.5, -0.4, -1] });
  const image = path.join(dir, "goldfinch.jpg");
  fs.writeFileSync(image, await scene());
  return { run, image };
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vit-serve-shot-"));
try {
  const choice = await selectEngine("auto");
  const { run, image } = await subject(dir);
  const model = await loadServedModel({ run }, choice);
  const server = await createServer({
    model,
    engine: describeEngine(choice),
    options: ServeOptionsSchema.parse({}),
    log: () => {},
  });
  await server.app.listen({ host: "127.0.0.1", port: 0 });
  const url = `http://127.0.0.1:${(server.app.server.address() as AddressInfo).port}/`;
  const browser = await launchChromium(path.join(dir, "profile"));
  try {
    const page = await browser.newPage();
    fs.mkdirSync(DOCS, { recursive: true });
    for (const [file, viewport, fullPage] of [
      ["serve-page.png", { width: 1280, height: 800 }, false],
      ["serve-page-phone.png", { width: 390, height: 844 }, true],
    ] as const) {
      await page.setViewportSize(viewport);
      await page.goto(url);
      // Code run in the page is passed as text: this project type-checks for Node, not the DOM.
      await page.waitForFunction(`document.getElementById("model").textContent.includes("classes")`);
      await page.setInputFiles("#file", image);
      await page.waitForFunction(`document.getElementById("overlay")?.naturalWidth > 0`);
      await page.screenshot({ path: path.join(DOCS, file), fullPage });
      process.stderr.write(`wrote ${path.join(DOCS, file)}\n`);
    }
  } finally {
    await browser.close();
    await server.close();
    await model.dispose();
  }
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
