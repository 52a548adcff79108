"""``probe serve``: a defended model as an Open Inference Protocol service; ``probe serve keys``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from probe.cli.options import _MODEL_PARAMS, ModelOptions, NOpt, SigmaOpt, option_group, require
from probe.cli.output import emit_json, err, escape, out
from probe.validate import check_int, check_n, check_real, check_sigma

KeysOpt = Annotated[Path, typer.Option("--keys", help="SQLite database of API keys and their budgets.")]
DEFAULT_KEYS = Path("probe-keys.sqlite")

serve_app = typer.Typer(no_args_is_help=False, help="Serve a defended model (v2 protocol, labels only); manage its keys.")
keys_app = typer.Typer(no_args_is_help=True, help="API keys of probe serve, each with a query budget.")
serve_app.add_typer(keys_app, name="keys")

_LOCAL = {name: _MODEL_PARAMS[name] for name in ("model", "device", "batch_size")}


@serve_app.callback(invoke_without_command=True)
@option_group("model_options", ModelOptions, _LOCAL, {})
def serve(
    ctx: typer.Context,
    model_options: ModelOptions,
    sigma: SigmaOpt = 0.25,
    n: NOpt = 100,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    keys: KeysOpt = DEFAULT_KEYS,
    no_keys: Annotated[bool, typer.Option("--no-keys", help="Serve without API keys or budgets.")] = False,
    rate: Annotated[float, typer.Option("--rate", help="Requests per second per key (0: no limit).")] = 0.0,
    burst: Annotated[int, typer.Option("--burst", help="Requests a key may send at once before --rate applies.")] = 20,
    max_points: Annotated[int, typer.Option("--max-points", help="Points per request at most.")] = 256,
    max_mb: Annotated[float, typer.Option("--max-mb", help="Largest request body in MiB.")] = 64.0,
    log: Annotated[Optional[Path], typer.Option("--log", help="JSON-lines request log (key, time, points, answers).")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="The model's name on the server (default: --model).")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed of the server's noise (default: fresh).")] = None,
) -> None:
    """Serve --model smoothed with --sigma/--n at http://HOST:PORT/v2/models/NAME: labels only,
    API keys with budgets in --keys, rate limits, a request log and /metrics."""
    if ctx.invoked_subcommand is not None:
        return
    check_sigma(sigma, name="--sigma")
    check_n(n, name="--n")
    check_int("--port", port, 0, 65535)
    check_int("--max-points", max_points, 1)
    check_real("--rate", rate, 0.0)
    check_real("--max-mb", max_mb, 0.0, low_closed=False)
    if seed is not None:
        check_int("--seed", seed, 0)
    require(no_keys or keys.exists(), f"no keys database {keys}: add a key first (probe serve keys add NAME --budget Q)")
    from probe.remote.server import ServeConfig, serve as run_server  # after the arguments: nothing heavy before
    from probe.smoothing import SmoothedClassifier
    from probe.zoo import DEFAULT_MODEL

    runtime = model_options.open()
    classifier = SmoothedClassifier(runtime, sigma, n)
    served = name or Path(model_options.model or DEFAULT_MODEL).stem
    config = ServeConfig(
        name=served, sigma=sigma, n=classifier.n, keys=None if no_keys else keys, rate=rate, burst=burst,
        max_points=max_points, max_bytes=int(max_mb * 2**20), log=log, seed=seed,
    )  # fmt: skip
    err.print(
        f"serving {escape(served)} (sigma={sigma}, n={classifier.n}, labels only) at http://{host}:{port}"
        f"/v2/models/{escape(served)}" + ("  [yellow]without API keys[/]" if no_keys else f"  keys: {escape(keys)}"),
        highlight=False,
    )
    run_server(classifier, config, host=host, port=port)


@keys_app.command("add")
def keys_add(
    key_name: Annotated[str, typer.Argument(metavar="NAME", help="The key's name.")],
    budget: Annotated[int, typer.Option("--budget", help="Queries (points) the key may ask in all.")],
    keys: KeysOpt = DEFAULT_KEYS,
) -> None:
    """Add a key; it is printed once (only its hash is stored)."""
    from probe.remote.keys import KeyStore

    store = KeyStore(keys)
    token = store.add(key_name, budget)
    store.close()
    err.print(f"key {escape(key_name)} with a budget of {budget} queries (shown once, keep it):", highlight=False)
    out.print(token, highlight=False, soft_wrap=True)


@keys_app.command("list")
def keys_list(keys: KeysOpt = DEFAULT_KEYS, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Keys with their budgets and spending."""
    from probe.remote.keys import KeyStore

    require(keys.exists(), f"no keys database {keys}")
    store = KeyStore(keys)
    rows = store.keys()
    store.close()
    if as_json:
        emit_json([{"name": k.name, "id": k.id, "budget": k.budget, "spent": k.spent, "revoked": k.revoked} for k in rows])
        return
    table = Table(title=f"keys in {keys}")
    for col in ("name", "id", "budget", "spent", "left", "revoked"):
        table.add_column(col)
    for k in rows:
        table.add_row(escape(k.name), k.id, str(k.budget), str(k.spent), str(k.remaining), "yes" if k.revoked else "")
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(key_name: Annotated[str, typer.Argument(metavar="NAME")], keys: KeysOpt = DEFAULT_KEYS) -> None:
    """Revoke a key (its spending stays on record)."""
    from probe.remote.keys import KeyStore

    require(keys.exists(), f"no keys database {keys}")
    store = KeyStore(keys)
    store.revoke(key_name)
    store.close()
    err.print(f"revoked {escape(key_name)}", highlight=False)
