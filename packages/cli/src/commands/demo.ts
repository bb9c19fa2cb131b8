import { loadBuild } from '../build-file.js';
import { formatAbi } from './abi.js';

export const demoHelp = `plugvisor demo

The main job: shows the default build's guest ABI (later: boots the bundled demo guest,
snapshots it mid-run and restores it in a new process).`;

export async function demoCommand(_argv: string[]): Promise<number> {
  const { hv } = await loadBuild();
  process.stdout.write(formatAbi(hv));
  return 0;
}
