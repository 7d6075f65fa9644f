"""Command line: a run of several processes on this machine, started as a cluster would start it.

  python -m fgjax.launch --num_processes=2 --devices_per_process=2 -- \
      --config=configs/default.py:forward --config.sharding.data_parallel=True --workdir=runs/two

starts N processes of `python -m fgjax.main <the arguments after --> --distributed
--coordinator_address=127.0.0.1:<a free port> --num_processes=N --process_id=<i>` (or of
`--module=M`, which must take these flags too, e.g. `benchmarks.communication`), with
`--xla_force_host_platform_device_count=D` added to their XLA_FLAGS if `--devices_per_process=D`
is given (D CPU devices each), and prints each line they write prefixed by its process (`[p0]
...`), on stdout or stderr as they wrote it. SIGTERM is passed on to them.

When a process ends with a non-zero status, the others have `--grace_seconds` to end too (a
mistake in the config ends every process alike), then are killed: a run cannot go on without one
of its processes, and the others would wait for it. The launcher exits with status 0 when every
process did; with their status when they all ended alike (they have said why); otherwise it
prints one line `error: ...` and exits with the first failed process's status (1 for a signal).
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Optional, Sequence, TextIO

# Flags the launcher sets on every process itself.
OWN_FLAGS = ("--distributed", "--coordinator_address", "--num_processes", "--process_id")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
  """The launcher's flags, and `main_args`: what follows `--`, for every process."""
  split = argv.index("--") if "--" in argv else len(argv)
  own, main_args = list(argv[:split]), list(argv[split + 1:])
  parser = argparse.ArgumentParser(
      prog="python -m fgjax.launch", description=__doc__.split("\n\n")[0],
      usage="%(prog)s --num_processes=N [options] -- <the arguments of every process>")
  # The command lines' one-line errors: `error: ...`, status 2.
  parser.error = lambda message: parser.exit(2, f"error: {message}\n")
  parser.add_argument("--num_processes", type=int, required=True, help="how many processes")
  parser.add_argument("--devices_per_process", type=int, default=None,
                      help="CPU devices per process (XLA's host platform device count)")
  parser.add_argument("--module", default="fgjax.main",
                      help="what every process runs (python -m MODULE)")
  parser.add_argument("--grace_seconds", type=float, default=5.0,
                      help="how long the others may take to end after one failed")
  args = parser.parse_args(own)
  if args.num_processes < 1:
    parser.error(f"--num_processes must be at least 1, got {args.num_processes}")
  if args.devices_per_process is not None and args.devices_per_process < 1:
    parser.error(f"--devices_per_process must be at least 1, got {args.devices_per_process}")
  if not main_args:
    parser.error(f"give the arguments of {args.module} after --")
  ours = [a for a in main_args if a.split("=")[0] in OWN_FLAGS]
  if ours:
    parser.error(f"the launcher sets {', '.join(ours)} itself; leave it out")
  args.main_args = main_args
  return args


def free_port() -> int:
  """A TCP port that is free on this machine now (the coordinator binds it soon after)."""
  with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    return probe.getsockname()[1]


def process_command(module: str, main_args: Sequence[str], port: int, num_processes: int,
                    process_id: int) -> list[str]:
  """The command line of process `process_id`."""
  return [sys.executable, "-m", module, *main_args, "--distributed",
          f"--coordinator_address=127.0.0.1:{port}", f"--num_processes={num_processes}",
          f"--process_id={process_id}"]


def process_env(devices_per_process: Optional[int]) -> dict:
  """The processes' environment: this one, unbuffered, with the CPU device count if given."""
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  if devices_per_process is not None:
    env["XLA_FLAGS"] = (f"{env.get('XLA_FLAGS', '')} "
                        f"--xla_force_host_platform_device_count={devices_per_process}").strip()
  return env


def _copy_lines(source: TextIO, target: TextIO, prefix: str, lock: threading.Lock) -> None:
  for line in source:
    with lock:
      target.write(prefix + line)
      target.flush()


def _start(args: argparse.Namespace) -> tuple[list[subprocess.Popen], list[threading.Thread]]:
  """Starts the processes and the threads that copy their output."""
  port, env, lock = free_port(), process_env(args.devices_per_process), threading.Lock()
  processes, copiers = [], []
  for i in range(args.num_processes):
    process = subprocess.Popen(
        process_command(args.module, args.main_args, port, args.num_processes, i), env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace")
    processes.append(process)
    for source, target in ((process.stdout, sys.stdout), (process.stderr, sys.stderr)):
      copiers.append(threading.Thread(target=_copy_lines, args=(source, target, f"[p{i}] ", lock),
                                      daemon=True))
      copiers[-1].start()
  print(f"[launch] {args.num_processes} processes (pids "
        f"{', '.join(str(p.pid) for p in processes)}), coordinator 127.0.0.1:{port}",
        file=sys.stderr, flush=True)
  return processes, copiers


def _first_failed(processes: Sequence[subprocess.Popen]) -> Optional[int]:
  return next((i for i, p in enumerate(processes) if p.poll() not in (None, 0)), None)


def wait(processes: Sequence[subprocess.Popen],
         grace_seconds: float) -> tuple[Optional[int], list[int]]:
  """Waits for every process to end; once one has failed, kills those still running after
  `grace_seconds`. Returns the process seen to fail first (None: none failed) and those killed."""
  first, failed_at, killed = None, None, []
  while any(p.poll() is None for p in processes):
    if first is None:
      first, failed_at = _first_failed(processes), time.monotonic()
    elif time.monotonic() - failed_at > grace_seconds:
      killed = [i for i, p in enumerate(processes) if p.poll() is None]
      for i in killed:
        processes[i].kill()
      break
    time.sleep(0.05)
  for process in processes:
    process.wait()
  return (_first_failed(processes) if first is None else first), killed


def outcome(statuses: Sequence[int], first: Optional[int],
            killed: Sequence[int]) -> tuple[int, Optional[str]]:
  """The launcher's exit status and its error line (None: the processes have said it all), from
  the processes' statuses, the one that failed first and those the launcher killed."""
  if not killed and len(set(statuses)) == 1 and statuses[0] >= 0:
    return statuses[0], None
  status = statuses[first]
  line = (f"process {first} was killed by {signal.Signals(-status).name}" if status < 0
          else f"process {first} exited with status {status}")
  if killed:
    line += f"; ended process{'es' if len(killed) > 1 else ''} {', '.join(map(str, killed))}"
  return max(status, 1), line


def main(argv: Sequence[str]) -> int:
  args = parse_args(argv)
  processes, copiers = _start(args)
  forward = lambda signum, frame: [p.send_signal(signum) for p in processes if p.poll() is None]
  signal.signal(signal.SIGTERM, forward)
  try:
    first, killed = wait(processes, args.grace_seconds)
  except KeyboardInterrupt:  # the terminal has sent it to the processes too
    first, killed = wait(processes, args.grace_seconds)
  for copier in copiers:
    copier.join()
  status, line = outcome([p.returncode for p in processes], first, killed)
  if line:
    print(f"error: {line}", file=sys.stderr)
  return status


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
