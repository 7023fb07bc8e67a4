/**
 * Errors a user can act on. Each carries the process exit code the CLI maps it to
 * (docs/design.md "CLI contract": 2 usage/config, 1 runtime, 130 interrupted); the message is
 * one line that names the file, key, tensor or image at fault.
 */
/** A name as it goes into a one-line message: JSON-quoted when it holds a line break or other control character. */
export function printable(name: string): string {
  return /\p{Cc}/u.test(name) ? JSON.stringify(name) : name;
}

export class VitError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = 1,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** A bad config file, key or value: exit 2. May hold several problems, one per line. */
export class ConfigError extends VitError {
  constructor(message: string) {
    super(message, 2);
  }
}

/** A bad command line (missing option, conflicting flags, unknown backend): exit 2. */
export class UsageError extends VitError {
  constructor(message: string) {
    super(message, 2);
  }
}

/** Bad data found at run time: an unreadable image, a malformed checkpoint, a shape mismatch: exit 1. */
export class DataError extends VitError {
  constructor(message: string) {
    super(message, 1);
  }
}

/** The run was stopped by SIGINT/SIGTERM after saving: exit 130. */
export class InterruptedError extends VitError {
  constructor(message: string) {
    super(message, 130);
  }
}
