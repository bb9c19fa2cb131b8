import { finishRestore, type RestorePlan, type SavedMemory, type StateValue } from '@plugvisor/core';
import { Layout } from './board/layout.js';
import { parseVcpuBlob } from './cpu/vcpu.js';
import { Arm64Machine, type Arm64MachineDescription, type Arm64MachineOptions } from './machine.js';

/**
 * The arm64 machine's part of restore (Firecracker's per-device `persist` idea): check the
 * machine description, every vCPU blob and the RAM layout a snapshot carries *before* anything
 * is built — the core calls `checkArm64Snapshot` through planRestore's `checkMachine` — then
 * build the machine from the verified plan, filling guest RAM straight from the stream.
 */
export function checkArm64Snapshot(description: StateValue, vcpus: readonly Uint8Array[], memory: readonly SavedMemory[]): string[] {
  const problems: string[] = [];
  const d = description as unknown as Partial<Arm64MachineDescription> | null;
  if (!d || d.board !== 'plugvisor-virt' || d.schema !== 1) {
    return ['machine is not a plugvisor-virt arm64 board (description schema 1)'];
  }
  if (d.vcpus !== vcpus.length) problems.push(`machine has ${String(d.vcpus)} vCPUs but ${vcpus.length} vCPU records`);
  if (typeof d.ramSize !== 'number' || d.ramSize <= 0 || d.ramSize % 4096 !== 0) problems.push(`RAM size ${String(d.ramSize)} is not a positive multiple of 4 KiB`);
  if (d.ramBase !== `0x${Layout.RAM_BASE.toString(16)}`) problems.push(`RAM base ${String(d.ramBase)} is not this board's 0x${Layout.RAM_BASE.toString(16)}`);
  if (memory.length !== 1 || memory[0]!.gpa !== Layout.RAM_BASE || memory[0]!.size !== d.ramSize) {
    problems.push(`memory records do not describe one RAM region of ${String(d.ramSize)} bytes at 0x${Layout.RAM_BASE.toString(16)}`);
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
