"""What every `make bench` script measures a command with: wall time and peak
RSS from /usr/bin/time, and the command's output."""
import subprocess, tempfile


def timed(cmd, cwd):
    """Runs `cmd` in `cwd`; returns (wall seconds, peak RSS in MB, CompletedProcess)."""
    with tempfile.NamedTemporaryFile("r") as t:
        out = subprocess.run(["/usr/bin/time", "-f", "%e %M", "-o", t.name] + cmd, cwd=cwd,
                             capture_output=True, text=True, check=True)
        wall, rss = t.read().split()[-2:]
    return float(wall), int(rss) // 1024, out
