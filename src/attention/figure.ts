/**
 * The attention picture: the image the model saw, the rollout over it, and the last layer's
 * class-token attention per head, each map blended over the image with a colour map, captioned,
 * in one PNG.
 */
import sharp from "sharp";
import { type ColorMap, inferno } from "../plot/colormap.js";
import { colorBar, pngImage, renderSvgToPng, svgDocument, text, truncate } from "../plot/svg.js";
import { minMaxScale } from "./rollout.js";

/** 8-bit RGB, row-major `[height, width, 3]`. */
export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array;
}

/**
 * Bilinear sample of a `[rows, cols]` grid at output pixel centres (OpenCV's / torch's
 * align_corners=False convention), as a function of the output pixel.
 */
function bilinear(
  grid: ArrayLike<number>,
  rows: number,
  cols: number,
  outH: number,
  outW: number,
  channels = 1,
) {
  const sy = rows / outH;
  const sx = cols / outW;
  return (y: number, x: number, ch = 0): number => {
    const fy = Math.min(rows - 1, Math.max(0, (y + 0.5) * sy - 0.5));
    const fx = Math.min(cols - 1, Math.max(0, (x + 0.5) * sx - 0.5));
    const y0 = Math.floor(fy);
    const x0 = Math.floor(fx);
    const y1 = Math.min(rows - 1, y0 + 1);
    const x1 = Math.min(cols - 1, x0 + 1);
    const wy = fy - y0;
    const wx = fx - x0;
    const at = (r: number, c: number) => grid[(r * cols + c) * channels + ch];
    return (
      (1 - wy) * ((1 - wx) * at(y0, x0) + wx * at(y0, x1)) + wy * ((1 - wx) * at(y1, x0) + wx * at(y1, x1))
    );
  };
}

export function resizeRgb(img: RgbImage, width: number, height: number): RgbImage {
  const sample = bilinear(img.data, img.height, img.width, height, width, 3);
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let k = 0; k < 3; k++) data[(y * width + x) * 3 + k] = Math.round(sample(y, x, k));
    }
  }
  return { width, height, data };
}

/**
 * `map` (`[grid[0], grid[1]]`, values in [0, 1]) upsampled bilinearly to the size of `img` and
 * blended over it: `(1 - alpha) * pixel + alpha * cmap(value)`.
 */
export function overlayHeatmap(
  img: RgbImage,
  map: ArrayLike<number>,
  grid: [number, number],
  opts: { cmap?: ColorMap; alpha?: number } = {},
): RgbImage {
  if (map.length !== grid[0] * grid[1]) {
    throw new Error(`overlayHeatmap: ${map.length} values for a ${grid[0]}x${grid[1]} grid`);
  }
  const cmap = opts.cmap ?? inferno;
  const alpha = opts.alpha ?? 0.6;
  const sample = bilinear(map, grid[0], grid[1], img.height, img.width);
  const data = new Uint8Array(img.data.length);
  for (let y = 0; y < img.height; y++) {
    for (let x = 0; x < img.width; x++) {
      const rgb = cmap(sample(y, x));
      const i = (y * img.width + x) * 3;
      for (let k = 0; k < 3; k++) data[i + k] = Math.round((1 - alpha) * img.data[i + k] + alpha * rgb[k]);
    }
  }
  return { width: img.width, height: img.height, data };
}

export function encodePng(img: RgbImage): Promise<Buffer> {
  return sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } })
    .png()
    .toBuffer();
}

export interface AttentionFigure {
  /** The image as the model saw it (after the eval transform). */
  image: RgbImage;
  /** Patch grid `[rows, cols]`; every map below has rows * cols values. */
  grid: [number, number];
  /** Rollout relevance of each patch (any scale: each map is shown min..max scaled). */
  rollout: ArrayLike<number>;
  /** The last layer's class-token attention per head. */
  heads: ArrayLike<number>[];
  /** Number of blocks (captions say which layer the heads come from). */
  depth: number;
  title: string;
  subtitle?: string;
}

export interface FigureLayout {
  panel: number;
  columns: number;
  width: number;
  height: number;
  /** Left edge of the colour bar (in row 1, where the third panel would be). */
  colorBarX: number;
}

/** Space between panels, and the caption strip above each. */
const GAP = 12;
const CAPTION = 20;

/**
 * Panels of `panel` px, at most 6 per row; row 1: input, rollout and the colour bar (in the
 * third column's place), then the heads.
 */
export function figureLayout(numHeads: number, panel = 224): FigureLayout {
  const columns = Math.max(2, Math.min(numHeads, 6));
  const rows = 1 + Math.ceil(numHeads / columns);
  const colorBarX = 16 + 2 * (panel + GAP) + 4;
  return {
    panel,
    columns,
    width: Math.max(16 + columns * (panel + GAP), colorBarX + 86),
    height: 64 + rows * (panel + CAPTION + GAP) + 8,
    colorBarX,
  };
}

export async function attentionFigureSvg(fig: AttentionFigure, panel = 224): Promise<string> {
  const layout = figureLayout(fig.heads.length, panel);
  const base = resizeRgb(fig.image, panel, panel);
  const panels: { label: string; png: Buffer }[] = [
    { label: "input (as the model sees it)", png: await encodePng(base) },
    {
      label: `attention rollout (${fig.depth} layers)`,
      png: await encodePng(overlayHeatmap(base, minMaxScale(fig.rollout), fig.grid)),
    },
  ];
  const headPanels = await Promise.all(
    fig.heads.map(async (h, i) => ({
      label: `layer ${fig.depth}, head ${i + 1}: class token`,
      png: await encodePng(overlayHeatmap(base, minMaxScale(h), fig.grid)),
    })),
  );
  // Titles are cut to the figure's width (a long checkpoint path would run off the edge).
  const fits = (size: number) => Math.floor((layout.width - 32) / (size * 0.62));
  const body: string[] = [text(16, 24, truncate(fig.title, fits(16)), { size: 16, weight: "bold" })];
  if (fig.subtitle) body.push(text(16, 46, truncate(fig.subtitle, fits(12)), { size: 12, fill: "#444444" }));
  const place = (p: { label: string; png: Buffer }, row: number, col: number) => {
    const x = 16 + col * (panel + GAP);
    const y = 64 + row * (panel + CAPTION + GAP);
    body.push(
      text(x + panel / 2, y + 14, truncate(p.label, Math.floor(panel / 7)), { size: 12, anchor: "middle" }),
    );
    body.push(pngImage(x, y + CAPTION, panel, panel, p.png));
  };
  for (const [i, p] of panels.entries()) place(p, 0, i);
  for (const [i, p] of headPanels.entries()) place(p, 1 + Math.floor(i / layout.columns), i % layout.columns);
  body.push(
    ...colorBar({
      x: layout.colorBarX,
      y: 64 + CAPTION,
      width: 14,
      height: panel,
      cmap: inferno,
      min: 0,
      max: 1,
      label: "each map scaled min..max",
      fontSize: 11,
    }),
  );
  return svgDocument(layout.width, layout.height, body);
}

export async function writeAttentionPng(
  path: string,
  fig: AttentionFigure,
  panel = 224,
): Promise<FigureLayout> {
  await renderSvgToPng(await attentionFigureSvg(fig, panel), path);
  return figureLayout(fig.heads.length, panel);
}

/**
 * The rollout alone as one PNG of `size` px: the image under its map (what `vit serve` shows
 * beside a prediction).
 */
export function rolloutOverlayPng(
  fig: Pick<AttentionFigure, "image" | "grid" | "rollout">,
  size: number,
): Promise<Buffer> {
  return encodePng(overlayHeatmap(resizeRgb(fig.image, size, size), minMaxScale(fig.rollout), fig.grid));
}
