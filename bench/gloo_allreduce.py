"""One PyTorch gloo rank of the all-reduce benchmark, driven by bench/allreduce.ts over JSON lines.

Usage: /usr/bin/python3 bench/gloo_allreduce.py RANK WORLD_SIZE PORT TIMEOUT_S

Joins the process group through a TCP store on 127.0.0.1:PORT (rank 0 hosts it), prints
{"type":"ready"}, then replies to each {"type":"run","bytes","warmup","iterations"} line on stdin with
{"type":"result","times","cpuMs","systemMs"} (milliseconds per timed call, and the CPU time of all threads
per timed call: user plus system, and system alone) and stops at {"type":"exit"} or end of input.
"""

import datetime
import json
import os
import sys
import time


def emit(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def run_size(dist, torch, rank, world_size, command):
    """Time `iterations` all-reduces after `warmup` untimed ones; every rank starts from rank + 1."""
    buffer = torch.full((command["bytes"] // 4,), float(rank + 1), dtype=torch.float32)
    expected = world_size * (world_size + 1) / 2
    times = []
    cpu_start = os.times()
    for call in range(command["warmup"] + command["iterations"]):
        start = time.perf_counter()
        dist.all_reduce(buffer)
        elapsed_ms = (time.perf_counter() - start) * 1000
        if call == 0 and buffer.numel() > 0 and (buffer[0].item() != expected or buffer[-1].item() != expected):
            raise RuntimeError(
                f"rank {rank}: gloo all-reduce returned {buffer[0].item()} and {buffer[-1].item()} at the ends "
                f"(expected {expected})"
            )
        if call + 1 == command["warmup"]:
            cpu_start = os.times()
        if call >= command["warmup"]:
            times.append(elapsed_ms)
    cpu_end = os.times()
    user_ms = (cpu_end.user - cpu_start.user) * 1000 / command["iterations"]
    system_ms = (cpu_end.system - cpu_start.system) * 1000 / command["iterations"]
    return {"times": times, "cpuMs": user_ms + system_ms, "systemMs": system_ms}


def main():
    rank, world_size, port, timeout_s = (int(value) for value in sys.argv[1:5])
    try:
        import torch
        import torch.distributed as dist

        dist.init_process_group(
            "gloo",
            init_method=f"tcp://127.0.0.1:{port}",
            rank=rank,
            world_size=world_size,
            timeout=datetime.timedelta(seconds=timeout_s),
        )
        emit({"type": "ready"})
        for line in sys.stdin:
            command = json.loads(line)
            if command["type"] != "run":
                break
            emit({"type": "result", **run_size(dist, torch, rank, world_size, command)})
        dist.destroy_process_group()
    except Exception as error:  # Reported to the parent as a line, so it can name the rank that failed.
        emit({"type": "error", "message": f"{type(error).__name__}: {error}"})
        sys.exit(1)


if __name__ == "__main__":
    main()
