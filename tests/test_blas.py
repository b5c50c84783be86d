"""One BLAS-thread policy: `import overfeat_np` gives the process one BLAS thread unless the user
chose a count (OVERFEAT_BLAS_THREADS, or the BLAS's own variables, which are left alone)."""

import os
import subprocess
import sys

import pytest

PROBE = ("import threadpoolctl, overfeat_np; "
         "print(max(i['num_threads'] for i in threadpoolctl.threadpool_info() if i['user_api'] == 'blas'))")


def _threads_after_import(**env):
    base = {k: v for k, v in os.environ.items()
            if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OVERFEAT_BLAS_THREADS")}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**base, **env}, capture_output=True, text=True,
                         timeout=120, check=True)
    return int(out.stdout.strip())


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two cores to tell one thread from the BLAS's default")
def test_import_applies_the_policy_unless_the_user_chose():
    assert _threads_after_import() == 1
    assert _threads_after_import(OVERFEAT_BLAS_THREADS="2") == 2
    assert _threads_after_import(OPENBLAS_NUM_THREADS="2", OMP_NUM_THREADS="2") == 2  # the user's own choice
