"""Score a checked .keras submission in a child process under CPU-time, memory and wall limits."""

from __future__ import annotations

import multiprocessing
import resource
import tempfile
from pathlib import Path

import numpy as np

from app.errors import InvalidInput

CPU_SECONDS = 120
MEMORY_BYTES = 8 * 2 ** 30
WALL_SECONDS = 180


def _child(conn, path, data, cpu_seconds, memory_bytes, recurrent_only, max_params, vocab_size):
    """In the child: limit itself, read the test arrays from `data`, rebuild the archive as data,
    evaluate (a language model, `vocab_size` given: the bench's perplexity and next-token
    accuracies), send the result back."""
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    from app.lab import safekeras  # after the limits: the rebuild and Keras count against them
    try:
        with np.load(data) as arrays:
            x, y = arrays["x"], arrays["y"]
        tied_class = None
        if vocab_size is not None:  # the bench's own tied-embedding layer and perplexity
            from training.layers import tied_embedding_layer
            from training.textgen import lm_metrics

            tied_class = tied_embedding_layer()
        sub = safekeras.load_submission(path, recurrent_only=recurrent_only, max_params=max_params,
                                        vocab_size=vocab_size, tied_class=tied_class)
        if vocab_size is not None:
            figures = lm_metrics(sub.model, x, y)
        else:
            probs = sub.model.predict(x, verbose=0, batch_size=256)
            figures = {"accuracy": float((probs.argmax(axis=-1) == y).mean())}
        conn.send(figures | {"params": sub.params, "layers": sub.layers})
    except InvalidInput as err:
        conn.send({"error": (err.msgid, err.status, err.params)})
    except (ValueError, TypeError) as err:
        # a model that rebuilt but cannot take the data set's input shape
        conn.send({"error": ("The model does not accept this data set's input: %(detail)s", 400,
                             {"detail": str(err)[:256]})})
    finally:
        conn.close()


def score_submission(path: Path, x, y, cpu_seconds: int = CPU_SECONDS, memory_bytes: int = MEMORY_BYTES,
                     wall_seconds: float = WALL_SECONDS, recurrent_only: bool = False,
                     max_params: int | None = None, vocab_size: int | None = None) -> dict:
    """Accuracy of the archive at `path` on (x, y), computed in a limited child process (with
    `vocab_size`, a language model's perplexity, top1_accuracy, top5_accuracy and tokens on
    padded next-token targets y)."""
    ctx = multiprocessing.get_context("spawn")  # TensorFlow is not fork-safe
    parent, child = ctx.Pipe(duplex=False)
    # the arrays go through a file: a spawned child's arguments are written to its pipe before it
    # runs, and a child that died early would leave that write blocked for ever
    with tempfile.TemporaryDirectory(prefix="lstmlab-score-") as tmp:
        data = Path(tmp) / "test.npz"
        np.savez(data, x=x, y=y)
        proc = ctx.Process(target=_child, args=(child, str(path), str(data), cpu_seconds, memory_bytes,
                                                recurrent_only, max_params, vocab_size), daemon=True)
        proc.start()
        child.close()
        try:
            ready = parent.poll(wall_seconds)
            result = parent.recv() if ready else None
        except EOFError:
            result = None
        finally:
            proc.join(5 if result is not None else 0)
            if proc.is_alive():
                proc.kill()
                proc.join()
    if result is None:
        if not ready:
            raise InvalidInput("Scoring the model took longer than %(seconds)s s; it was stopped.",
                               seconds=format(wall_seconds, "g"))
        raise InvalidInput("Scoring the model went over its CPU-time or memory limit; it was stopped.")
    if "error" in result:
        msgid, status, params = result["error"]
        raise InvalidInput(msgid, status=status, **params)
    return result
