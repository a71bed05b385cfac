"""Hub failures as one clear line, with the token never in it: a :class:`ConfigError` (exit 2) when the input is
wrong (token, repo id, endpoint URL), an :class:`EnvironmentFailure` (exit 3) when the network or server failed."""
from __future__ import annotations

from ..errors import ConfigError, EnvironmentFailure

__all__ = ["hub_error"]


def _clean(text: str, token: str | None) -> str:
    line = " ".join(str(text).split())[:160]
    return line.replace(token, "<token>") if token else line


def hub_error(exc: BaseException, *, endpoint: str, repo_id: str, token: str | None = None) -> ConfigError | EnvironmentFailure | None:
    """The ConfigError/EnvironmentFailure for a known Hub/network failure, or None (the caller re-raises ``exc``)."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if isinstance(exc, OfflineModeIsEnabled):
        return ConfigError("HF_HUB_OFFLINE", "offline mode is on, so nothing can be published",
                           "unset HF_HUB_OFFLINE (and TRANSFORMERS_OFFLINE) to publish")
    if isinstance(exc, (httpx2.ConnectError, httpx2.TimeoutException)):  # the network, not the input: exit 3
        return EnvironmentFailure(endpoint, f"cannot reach the endpoint ({type(exc).__name__})",
                                  "check --endpoint / HF_ENDPOINT and your network; nothing was committed")
    if isinstance(exc, HfHubHTTPError) and exc.response is not None:
        status = exc.response.status_code
        server = exc.response.headers.get("X-Error-Message") or exc.response.reason_phrase or ""
        where = f"{exc.response.request.method} {exc.response.request.url.path}" if exc.response.request else endpoint
        said = f"{endpoint} answered {status} to {where}" + (f" ({_clean(server, token)})" if server else "")
        if status == 401:
            return ConfigError("token", f"{said}: the token was refused",
                               "run `hf auth login` or set HF_TOKEN to a valid token with write access")
        if status == 403:
            return ConfigError("repo_id", f"{said}: no write access to {repo_id}",
                               "use a namespace your token can write to, or a token with write access")
        if status == 404:
            return ConfigError("endpoint", f"{said}: not found",
                               "check --endpoint / HF_ENDPOINT points to a Hub and --repo-id is right")
        if status == 412:
            return ConfigError("repo_id", f"{said}: {repo_id} changed while publishing",
                               "run the same publish again (it merges the new rows)")
        if status >= 500:  # the server failed, not the input: exit 3
            return EnvironmentFailure(endpoint, f"{said}: server error; nothing was committed", "retry later")
        return ConfigError("endpoint", said, "check the repo id and the files being published")
    text = str(exc)
    # An upload wrapper (LFS, or Xet's ConnectionError): report the HTTP/network failure inside it if any.
    if isinstance(exc, (RuntimeError, ValueError, OSError)) and (
            "LFS" in text or "uploading" in text.lower() or "xet" in text.lower()):
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        nested = hub_error(cause, endpoint=endpoint, repo_id=repo_id, token=token) if cause is not exc else None
        if nested is not None:
            return nested
        return ConfigError("upload", f"uploading to {endpoint} failed ({_clean(cause, token)}); nothing was "
                           "committed", "retry; for an endpoint without Xet storage set HF_HUB_DISABLE_XET=1")
    return None
