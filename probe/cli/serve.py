"""``probe serve``: a defended model as an Open Inference Protocol service; ``probe serve keys``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from probe.cli.options import _MODEL_PARAMS, ModelOptions, NOpt, SigmaOpt, option_group, require
from probe.cli.output import emit_json, err, escape, out
from probe.errors import ProbeError
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
    no_keys: Annotated[
        bool,
        typer.Option("--no-keys", help="Serve without API keys or budgets (loopback only, unless --insecure)."),
    ] = False,
    insecure: Annotated[
        bool,
        typer.Option("--insecure", help="Allow --no-keys, or metrics, off loopback."),
    ] = False,
    rate: Annotated[float, typer.Option("--rate", help="Requests per second per key (0: no limit).")] = 0.0,
    burst: Annotated[int, typer.Option("--burst", help="Requests a key may send at once before --rate applies.")] = 20,
    max_points: Annotated[int, typer.Option("--max-points", help="Points per request at most.")] = 256,
    max_mb: Annotated[
        Optional[float],
        typer.Option("--max-mb", help="Largest request body in MiB (default: what --max-points points take)."),
    ] = None,
    read_timeout: Annotated[
        float,
        typer.Option("--read-timeout", help="Seconds a request's headers, and then its body, may take to arrive."),
    ] = 10.0,
    log: Annotated[
        Optional[Path],
        typer.Option("--log", help="JSON-lines request log (client, key, points, digests, answers), 0600."),
    ] = None,
    name: Annotated[
        Optional[str],
        typer.Option("--name", help="The model's name on the server (default: --model)."),
    ] = None,
    seed: Annotated[
        Optional[int],
        typer.Option("--seed", help="Seed of the server's noise (it repeats after a restart: needs --insecure-seed)."),
    ] = None,
    insecure_seed: Annotated[bool, typer.Option("--insecure-seed", help="Allow --seed (tests only).")] = False,
    metrics_host: Annotated[
        str,
        typer.Option("--metrics-host", help="Address of the /metrics listener."),
    ] = "127.0.0.1",
    metrics_port: Annotated[
        Optional[int],
        typer.Option("--metrics-port", help="Port of the /metrics listener (default: no metrics served)."),
    ] = None,
    ssl_certfile: Annotated[
        Optional[str],
        typer.Option("--ssl-certfile", help="TLS certificate (PEM): serve HTTPS."),
    ] = None,
    ssl_keyfile: Annotated[
        Optional[str],
        typer.Option("--ssl-keyfile", help="TLS private key (PEM) of --ssl-certfile."),
    ] = None,
    api_docs: Annotated[bool, typer.Option("--api-docs", help="Serve /docs, /redoc and /openapi.json.")] = False,
) -> None:
    """Serve --model smoothed with --sigma/--n at http://HOST:PORT/v2/models/NAME: labels only,
    API keys with budgets in --keys, rate limits, a request log; /metrics on --metrics-port."""
    if ctx.invoked_subcommand is not None:
        return
    check_sigma(sigma, name="--sigma")
    check_n(n, name="--n")
    check_int("--port", port, 0, 65535)
    check_int("--max-points", max_points, 1)
    check_real("--rate", rate, 0.0)
    check_real("--read-timeout", read_timeout, 0.0, low_closed=False)
    if max_mb is not None:
        check_real("--max-mb", max_mb, 0.0, low_closed=False)
    if metrics_port is not None:
        check_int("--metrics-port", metrics_port, 0, 65535)
    if seed is not None:
        check_int("--seed", seed, 0)
    require(seed is None or insecure_seed,
            "--seed repeats the server's noise after every restart: add --insecure-seed (tests only)")  # fmt: skip
    require(no_keys or keys.exists(), f"no keys database {keys}: add a key first (probe serve keys add NAME --budget Q)")
    from probe.remote.listen import bind, check_tls, is_loopback  # after the arguments: nothing heavy before
    from probe.remote.listen import serve as run_server
    from probe.remote.observe import Metrics
    from probe.remote.server import ServeConfig, create_app
    from probe.smoothing import SmoothedClassifier
    from probe.zoo import DEFAULT_MODEL

    require(not no_keys or insecure or is_loopback(host),
            f"--no-keys on {host}, which is not loopback: add --insecure to serve anyone without keys")  # fmt: skip
    require(metrics_port is None or insecure or is_loopback(metrics_host),
            f"--metrics-host {metrics_host} is not loopback, and the metrics name every key: add --insecure")  # fmt: skip
    check_tls(ssl_certfile, ssl_keyfile)
    sock = bind(host, port)  # before the model loads: a busy port is one error line
    metrics = Metrics()
    if metrics_port is not None:
        try:
            metrics.listen(metrics_host, metrics_port, certfile=ssl_certfile, keyfile=ssl_keyfile)
        except OSError as exc:
            where = f"{metrics_host}:{metrics_port} (--metrics-port)"
            raise ProbeError(f"cannot listen on {where}: {exc.strerror or exc}") from None
    runtime = model_options.open()
    classifier = SmoothedClassifier(runtime, sigma, n)
    served = name or Path(model_options.model or DEFAULT_MODEL).stem
    config = ServeConfig(
        name=served, sigma=sigma, n=classifier.n, keys=None if no_keys else keys, rate=rate, burst=burst,
        max_points=max_points, max_bytes=None if max_mb is None else int(max_mb * 2**20), read_timeout=read_timeout,
        log=log, seed=seed, insecure_seed=insecure_seed, docs=api_docs,
    )  # fmt: skip
    scheme = "https" if ssl_certfile else "http"
    where = f"  metrics: {scheme}://{metrics_host}:{metrics_port}/metrics" if metrics_port is not None else ""
    err.print(
        f"serving {escape(served)} (sigma={sigma}, n={classifier.n}, labels only) at {scheme}://{host}:{port}"
        f"/v2/models/{escape(served)}" + ("  [yellow]without API keys[/]" if no_keys else f"  keys: {escape(keys)}")
        + escape(where),
        highlight=False,
    )
    app = create_app(classifier, config, metrics)
    run_server(app, sock, header_timeout=read_timeout, ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile)


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
