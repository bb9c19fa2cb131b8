import { isPlugvisorError, isServiceFailure, isUsageError } from '@plugvisor/core';
import { abiCommand, abiHelp } from './commands/abi.js';
import { checkCommand, checkHelp } from './commands/check.js';
import { demoCommand, demoHelp } from './commands/demo.js';
import { hostsCommand, hostsHelp } from './commands/hosts.js';
import { restoreCommand, restoreHelp } from './commands/restore.js';
import { runCommand, runHelp } from './commands/run.js';

/** Exit statuses of the CLI itself (guest runs add their own, see `plugvisor run --help`). */
export const Exit = Object.freeze({ OK: 0, FAILURE: 1, USAGE: 2, REFUSED: 3, SERVICE_FAILURE: 14 });

interface Command {
  readonly run: (argv: string[]) => Promise<number>;
  readonly help: string;
  readonly summary: string;
}

const commands: Record<string, Command> = {
  abi: { run: abiCommand, help: abiHelp, summary: 'print the guest ABI of a build' },
  check: { run: checkCommand, help: checkHelp, summary: 'is moving VMs between two builds (or x86 hosts: --hosts) safe' },
  run: { run: runCommand, help: runHelp, summary: 'boot an aarch64 or x86-64 image (snapshot it with --snapshot-at)' },
  restore: { run: restoreCommand, help: restoreHelp, summary: 'continue a snapshotted VM, on this build or another' },
  demo: { run: demoCommand, help: demoHelp, summary: 'the main job: the default build, end to end' },
  hosts: { run: hostsCommand, help: hostsHelp, summary: "dump this host's x86 capabilities (XSAVE) for pool baselines" },
};

export const usage = () =>
  `usage: plugvisor <command> [options]\n\n${Object.entries(commands)
    .map(([name, c]) => `  ${name.padEnd(10)}${c.summary}`)
    .join('\n')}\n\nplugvisor <command> --help for a command's options.\n`;

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage());
    return name ? Exit.OK : Exit.USAGE;
  }
  const command = commands[name];
  if (!command) {
    process.stderr.write(`plugvisor: unknown command '${name}'\n${usage()}`);
    return Exit.USAGE;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(command.help + '\n');
    return Exit.OK;
  }
  try {
    return await command.run(rest);
  } catch (e) {
    // parseArgs reports unknown or malformed flags with ERR_PARSE_ARGS_* codes. Core's errors are
    // recognised by their brand, so one thrown by a service's own copy of @plugvisor/core (a
    // factory refusing its options, a ServiceFailure) is still one line and an exit status.
    const code = (e as { code?: unknown } | undefined)?.code;
    if (isUsageError(e) || (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS'))) {
      process.stderr.write(`plugvisor ${name}: ${(e as Error).message}\n`);
      return Exit.USAGE;
    }
    if (isServiceFailure(e)) {
      // A service failed outside a guest run (creating the VM, restoring it): exit 14, one line.
      process.stderr.write(`plugvisor ${name}: service failure: ${e.message}\n`);
      if (process.env.PLUGVISOR_DEBUG === '1') process.stderr.write(`${(e.cause as Error)?.stack ?? String(e.cause)}\n`);
      return Exit.SERVICE_FAILURE;
    }
    if (isPlugvisorError(e)) {
      process.stderr.write(`plugvisor ${name}: ${e.message}\n`);
      return Exit.FAILURE;
    }
    throw e;
  }
}
