/**
 * Errors of the reference guest. A guest fault (SHUTDOWN, INTERNAL_ERROR, FAIL_ENTRY, an exit the
 * program cannot make) and a failed end-of-run state check are GuestFault; bad options are GuestUsageError;
 * a run stopped through its AbortSignal is GuestAborted. Kernel call failures stay SyscallError.
 */

export class GuestFault extends Error {
  readonly vcpu: number;
  readonly scenario: string;
  readonly exit: Record<string, unknown> | null;

  constructor(vcpu: number, scenario: string, message: string, exit: Record<string, unknown> | null = null) {
    super(`vCPU ${vcpu} (scenario ${scenario}): ${message}`);
    this.name = 'GuestFault';
    this.vcpu = vcpu;
    this.scenario = scenario;
    this.exit = exit;
  }
}

export class GuestUsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GuestUsageError';
  }
}

export class GuestAborted extends Error {
  constructor() {
    super('guest run aborted');
    this.name = 'GuestAborted';
  }
}
