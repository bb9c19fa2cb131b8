import { finishRestore, type RestorePlan, type SavedMemory, type StateValue } from '@plugvisor/core';
import { Layout } from './board/layout.js';
import { parseVcpuBlob } from './cpu/vcpu.js';
import { validateArm64Description } from './description.js';
import { Arm64Machine, type Arm64MachineDescription, type Arm64MachineOptions } from './machine.js';

/**
 * The arm64 machine's part of restore (Firecracker's per-device `persist` idea): check the
 * machine description, every vCPU blob and the RAM layout a snapshot carries *before* anything
 * is built — the core calls `checkArm64Snapshot` through planRestore's `checkMachine` — then
 * build the machine from the verified plan, filling guest RAM straight from the stream.
 */
export function checkArm64Snapshot(description: StateValue, vcpus: readonly Uint8Array[], memory: readonly SavedMemory[]): string[] {
  const problems: string[] = [];
  // Restore checks are dry runs of the components' own validating restores.
  let d: Arm64MachineDescription | undefined;
  try {
    d = validateArm64Description(description, vcpus.length);
  } catch (e) {
    problems.push((e as Error).message);
  }
  const ramSize = d?.ramSize ?? (description as { ramSize?: unknown } | null)?.ramSize;
  if (memory.length !== 1 || memory[0]!.gpa !== Layout.RAM_BASE || memory[0]!.size !== ramSize) {
    problems.push(`memory records do not describe one RAM region of ${String(ramSize)} bytes at 0x${Layout.RAM_BASE.toString(16)}`);
  }
  vcpus.forEach((blob, i) => {
    try {
      parseVcpuBlob(blob);
    } catch (e) {
      problems.push(`vCPU ${i}: ${(e as Error).message}`);
    }
  });
  return problems;
}

/**
 * Builds the machine for a verified restore plan, attaches the plan's VM to it (and it to the
 * VM), and returns it ready to `run()`.
 */
export function machineFromPlan(plan: RestorePlan, options: Omit<Arm64MachineOptions, 'vcpus' | 'memSize'> = {}): Arm64Machine {
  const m = Arm64Machine.fromImage({ arch: plan.arch, description: plan.description, vcpus: plan.vcpus, memory: [] }, options);
  try {
    finishRestore(plan, m);
  } catch (e) {
    m.dispose();
    throw e;
  }
  return m;
}
