/**
 * The program shell every sub-command hangs off, and the single place errors become exit codes
 * (docs/design.md "CLI contract"): 0 ok, 1 runtime, 2 usage or config, 130 interrupted.
 */
import { Command, CommanderError } from "commander";
import { VitError } from "../src/errors.js";
import { DESCRIPTION, VERSION } from "../src/version.js";

export function createProgram(): Command {
  return (
    new Command("vit")
      .description(DESCRIPTION)
      .version(VERSION, "-V, --version", "print the version")
      .helpOption("-h, --help", "show help for a command")
      .option("--verbose", "print stack traces with errors")
      .configureHelp({ showGlobalOptions: true, sortSubcommands: false })
      // Throw instead of process.exit so handleError decides the code; sub-commands inherit this.
      .exitOverride()
  );
}

/** Parses argv and runs the command; sets process.exitCode rather than exiting so stdout drains. */
export async function runProgram(program: Command, argv: readonly string[]): Promise<void> {
  try {
    await program.parseAsync(argv);
  } catch (err) {
    const verbose = program.opts().verbose === true || argv.includes("--verbose");
    process.exitCode = handleError(err, { verbose });
  }
}

/** Writes the error to stderr (one line per problem; the stack only when verbose) and returns the exit code. */
export function handleError(
  err: unknown,
  opts: { verbose: boolean },
  write: (text: string) => void = (text) => process.stderr.write(text),
): number {
  if (err instanceof CommanderError) {
    // Commander has already printed its message (or the help / version text).
    return err.exitCode === 0 ? 0 : 2;
  }
  const e = err instanceof Error ? err : new Error(String(err));
  const known = e instanceof VitError;
  write(`${known ? e.message : `error: ${e.message}`}\n`);
  if (opts.verbose && e.stack) write(`${e.stack}\n`);
  else if (!known) write("(run with --verbose for the stack trace)\n");
  return known ? e.exitCode : 1;
}
