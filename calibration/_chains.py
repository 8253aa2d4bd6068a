"""NUTS chains in worker processes (``calibrate(..., method="nuts", chain_method="processes")``).

XLA runs one ODE solve on one core, and numpyro's ``chain_method="parallel"`` (``pmap`` over
host devices) fails with the solver in this JAX version, so the second core is used by running
groups of chains in separate Python processes. The calling process runs the first group itself
while ``W - 1`` worker processes (``python -m calibration._chains``) run the others; each group
runs its chains vectorised. Chain ``c`` is always seeded with ``jax.random.split(key, C)[c]``,
whatever the chain method or the number of workers, so results are reproducible.

Workers are started fresh (``subprocess`` + ``python -m``, the equivalent of the ``spawn``
start method without re-importing the caller's ``__main__``), receive the calibration problem
(the library's own model, schedule, observations and prior objects, or a module-level model
function) as a pickle on stdin, and send back numpy arrays as a pickle on stdout. Nothing from
outside the calling process is unpickled: the parent only reads what its own child wrote. A
worker that fails is reported as :class:`~calibration.ChainProcessError` with its traceback.
"""

from __future__ import annotations

import io
import os
import pathlib
import pickle
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import numpy as np

__all__ = ["ChainProcesses", "available_cores", "run_group"]

#: how each group (one process) runs its chains; ``"vectorized"`` and ``"sequential"`` measured
#: the same for 2 chains per process (67 vs 68 s for the benchmark's 4 x (500 + 500)).
GROUP_CHAIN_METHOD = "vectorized"
_PROTOCOL = pickle.HIGHEST_PROTOCOL


def available_cores() -> int:
    """CPU cores this process may use (affinity mask where the OS reports one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def run_group(problem, z_init, keys: np.ndarray, settings: dict, chain_method: str = GROUP_CHAIN_METHOD,
              inverse_mass=None) -> dict:
    """Run ``len(keys)`` NUTS chains of ``problem`` in this process; numpy arrays back.

    keys: (k, 2) raw uint32 keys, one per chain. inverse_mass: initial (P, P) inverse mass
    matrix or None (identity); warmup adapts it either way. Returns ``z`` (k, D, P),
    ``solve_ok`` (k, D), ``diverging`` (k, D), ``num_steps`` (k, D) and ``wall_s``.
    """
    import jax.numpy as jnp
    from numpyro.infer import MCMC, NUTS

    from calibration._inference import _potential

    # NUTS on the potential (negative log posterior in z space) directly, not on a numpyro
    # model: numpyro would otherwise trace the model eagerly to initialise it, and each eager
    # trace of the solver's gradient compiles it anew (7 s of the 30 s a chain took)
    potential = _potential(problem)
    k = int(keys.shape[0])
    z0 = _initial_points(problem, z_init, keys)
    imm = None
    if inverse_mass is not None:
        imm = jnp.asarray(inverse_mass) if settings["dense_mass"] else jnp.diag(jnp.asarray(inverse_mass))
    kernel = NUTS(potential_fn=potential, max_tree_depth=settings["max_tree_depth"],
                  target_accept_prob=settings["target_accept_prob"], dense_mass=settings["dense_mass"],
                  inverse_mass_matrix=imm)
    mcmc = MCMC(kernel, num_warmup=settings["num_warmup"], num_samples=settings["num_samples"], num_chains=k,
                chain_method=chain_method if k > 1 else "sequential", progress_bar=False)
    t = time.perf_counter()
    mcmc.run(jnp.asarray(keys if k > 1 else keys[0]), init_params=jnp.asarray(z0 if k > 1 else z0[0]),
             extra_fields=("diverging", "num_steps", "potential_energy"))
    z = np.asarray(mcmc.get_samples(group_by_chain=True))
    ef = mcmc.get_extra_fields(group_by_chain=True)
    pe = np.asarray(ef["potential_energy"])
    # a failed solve has infinite potential and is never accepted; the flag says so per draw
    out = {"z": z.reshape(k, -1, z.shape[-1]), "solve_ok": np.isfinite(pe).reshape(k, -1),
           "diverging": np.asarray(ef["diverging"]).reshape(k, -1),
           "num_steps": np.asarray(ef["num_steps"]).reshape(k, -1)}
    out["wall_s"] = time.perf_counter() - t
    return out


def _initial_points(problem, z_init, keys: np.ndarray, tries: int = 100) -> np.ndarray:
    """(k, P) starting points: ``z_init`` for every chain, or, without one, points drawn
    uniformly in (-0.5, 0.5) around the prior median (z = 0) from each chain's key, redrawn
    where the simulation fails (as numpyro's ``init_to_uniform(radius=0.5)``)."""
    import jax
    import jax.numpy as jnp

    p = len(problem.names)
    k = int(keys.shape[0])
    if z_init is not None:
        return np.broadcast_to(np.asarray(z_init, dtype=float), (k, p)).copy()
    from calibration._errors import CalibrationError

    vg = problem.fns["vg"]
    points = np.empty((k, p))
    for c in range(k):
        key = jax.random.fold_in(jnp.asarray(keys[c], dtype=jnp.uint32), 0x1417)
        for _ in range(tries):
            key, sub = jax.random.split(key)
            z = np.asarray(jax.random.uniform(sub, (p,), minval=-0.5, maxval=0.5, dtype=float))
            (v, ok), g = vg(jnp.asarray(z), problem.data)
            if bool(ok) and np.isfinite(float(v)) and np.all(np.isfinite(np.asarray(g))):
                points[c] = z
                break
        else:
            raise CalibrationError(
                f"no starting point with a successful simulation found for NUTS chain {c} in {tries} draws "
                "around the prior median; use init='map' or check the model and prior.")
    return points


# ---------------------------------------------------------------------------- parent side
def _child_env() -> dict:
    env = dict(os.environ)
    root = str(pathlib.Path(__file__).resolve().parent.parent)  # makes `calibration` importable
    env["PYTHONPATH"] = os.pathsep.join([root, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    return env


class _Worker:
    """One child process running a group of chains. The problem is sent at start (the child
    imports and builds it while the caller computes its MAP), the initial point when known."""

    def __init__(self, index: int, chains: list[int], message: bytes):
        self.index, self.chains = index, chains
        self.result: dict | None = None
        self.error: str | None = None
        self._out = b""
        self._err = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "calibration._chains"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._err, env=_child_env())
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        self._send(message, close=False)

    def _send(self, message: bytes, close: bool):
        try:
            self.proc.stdin.write(message)
            self.proc.stdin.flush()
            if close:
                self.proc.stdin.close()
        except OSError:  # the child has gone; its exit code and stderr tell why (see finish)
            pass

    def _read(self):
        self._out = self.proc.stdout.read()
        self.proc.wait()

    def start(self, z_init, inverse_mass):
        self._send(pickle.dumps({"z_init": z_init, "inverse_mass": inverse_mass}, protocol=_PROTOCOL), close=True)

    def finish(self):
        self.thread.join()
        self._err.seek(0)
        tail = self._err.read()[-4000:].decode(errors="replace")
        if self.proc.returncode != 0 or not self._out:
            self.error = f"the worker process exited with code {self.proc.returncode}; its stderr ends:\n{tail}"
            return
        try:
            reply = pickle.loads(self._out)  # written by our own child process (see module docstring)
        except Exception as e:  # noqa: BLE001 - reported as ChainProcessError by the parent
            self.error = f"unreadable reply from the worker process ({e!r}); its stderr ends:\n{tail}"
            return
        if "error" in reply:
            self.error = reply["error"]
        else:
            self.result = reply

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.thread.join(timeout=10)
        self._err.close()


class ChainProcesses:
    """Chains split over ``n_workers`` processes, this one included.

    Create it early (the workers import JAX and build the problem meanwhile), then
    :meth:`run` with the initial point; always :meth:`close` (kills workers still running).
    Raises :class:`~calibration.ChainProcessError` when the problem does not pickle.
    """

    def __init__(self, model, schedule, observations, prior, simulate_options, keys: np.ndarray, settings: dict,
                 n_workers: int):
        from calibration._errors import ChainProcessError

        n_chains = int(keys.shape[0])
        self.keys, self.settings = np.asarray(keys, dtype=np.uint32), settings
        self.groups = [list(map(int, g)) for g in np.array_split(np.arange(n_chains),
                                                                  max(1, min(n_workers, n_chains)))]
        self.workers: list[_Worker] = []
        payload = {"model": model, "schedule": schedule, "observations": observations, "prior": prior,
                   "simulate_options": dict(simulate_options) if simulate_options else None, "settings": settings}
        try:
            blob = pickle.dumps(payload, protocol=_PROTOCOL)
        except Exception as e:
            raise ChainProcessError(
                f"the calibration problem cannot be sent to a worker process ({type(e).__name__}: {e}); a model "
                "function must be defined at module level (not a lambda or a closure). Use "
                "chain_method='vectorized' to run the chains in this process.") from e
        try:
            for i, g in enumerate(self.groups[1:], start=1):
                msg = pickle.dumps({"sys_path": list(sys.path), "blob": blob, "keys": self.keys[g]},
                                   protocol=_PROTOCOL)
                self.workers.append(_Worker(i, g, msg))
        except BaseException:
            self.close()
            raise

    def run(self, problem, z_init, inverse_mass=None) -> tuple[dict, dict]:
        """Run every group (the first one here); merged arrays (as :func:`run_group`) and info."""
        from calibration._errors import ChainProcessError

        z = None if z_init is None else np.asarray(z_init, dtype=float)
        imm = None if inverse_mass is None else np.asarray(inverse_mass, dtype=float)
        for w in self.workers:
            w.start(z, imm)
        results = [run_group(problem, z, self.keys[self.groups[0]], self.settings, inverse_mass=imm)]
        for w in self.workers:
            w.finish()
            if w.error is not None:
                raise ChainProcessError(f"NUTS chain(s) {w.chains} failed in worker process {w.index}: {w.error}")
            results.append(w.result)
        merged = {k: np.concatenate([r[k] for r in results], axis=0)
                  for k in ("z", "solve_ok", "diverging", "num_steps")}
        info = {"workers": len(self.groups), "chains_per_worker": [len(g) for g in self.groups],
                "worker_wall_s": [float(r["wall_s"]) for r in results]}
        return merged, info

    def close(self):
        for w in self.workers:
            w.stop()


# ---------------------------------------------------------------------------- child side
def _child_main() -> int:
    stdin = sys.stdin.buffer
    sys.stdout.flush()
    stdout = os.fdopen(os.dup(1), "wb")  # the reply channel
    os.dup2(2, 1)  # anything printed in here (Python or C) goes to stderr, not into the reply
    try:
        msg = pickle.load(stdin)  # written by the parent library process
        sys.path[:] = list(msg["sys_path"]) + [p for p in sys.path if p not in msg["sys_path"]]
        import warnings

        from calibration._inference import _Problem

        payload = pickle.loads(msg["blob"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            problem = _Problem(payload["model"], payload["schedule"], payload["observations"], payload["prior"],
                               payload["simulate_options"])
            start = pickle.load(stdin)  # sent once the parent has its MAP
            reply = run_group(problem, start["z_init"], msg["keys"], payload["settings"],
                              inverse_mass=start["inverse_mass"])
    except BaseException as e:  # noqa: BLE001 - every failure goes back to the parent, typed
        reply = {"error": f"{type(e).__name__}: {e}\n{''.join(traceback.format_exception(e))[-3000:]}"}
    buf = io.BytesIO()
    pickle.dump(reply, buf, protocol=_PROTOCOL)
    stdout.write(buf.getvalue())
    stdout.close()
    return 0


if __name__ == "__main__":
    sys.exit(_child_main())
