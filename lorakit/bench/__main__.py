import lorakit.bench as _pkg
from lorakit._dispatch import run

run(_pkg)
