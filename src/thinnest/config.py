"""Process settings: the one place for defaults. Read from ``THINNEST_*`` environment variables.

Every component takes what it needs from one :class:`Settings` object built at start-up
(:func:`get_settings`); nothing else reads ``os.environ``. The defaults run the whole stack
offline on loopback (``env=dev``); ``env=production`` refuses missing or placeholder secrets.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from thinnest.errors import ConfigError

#: The file ``thinnest dev`` writes its generated LiveKit credentials and demo key into.
DEV_CREDENTIALS_FILE = "dev-credentials.json"
_PLACEHOLDER_SECRETS = {"secret", "devkey", "changeme", "change-me", "password"}


class Settings(BaseSettings):
    """All process-level settings. Each field is ``THINNEST_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(
        env_prefix="THINNEST_", extra="ignore", use_attribute_docstrings=True
    )

    env: Literal["dev", "production"] = "dev"
    """`dev` runs on loopback with generated secrets; `production` requires real ones"""
    data_dir: Path = Path(".thinnest")
    """database, recordings, models cache, dev config"""
    database_url: str | None = None
    """SQLAlchemy URL; default: SQLite `<data_dir>/thinnest.db`; or `postgresql+psycopg://…`"""
    log_level: str = "INFO"
    """log level of all Thinnest processes"""

    # --- API --------------------------------------------------------------------------------
    api_host: str = "127.0.0.1"
    """address `thinnest serve` binds"""
    api_port: int = Field(8000, ge=1, le=65535)
    """port `thinnest serve` binds"""
    api_processes: int = Field(1, ge=1, le=64)
    """API processes `thinnest serve` runs on its one port (uvicorn restarts one that dies);
    they share the database, rate limits included: use PostgreSQL for more than one at load"""
    public_base_url: str | None = None
    """public URL of the API (builds `websocket_url`); default `http://<api_host>:<api_port>`"""
    max_body_bytes: int = Field(65536, ge=1024)
    """largest accepted request body"""
    max_context_bytes: int = Field(16384, ge=2)
    """largest `context` object (JSON bytes) for /voice/start"""
    max_context_depth: int = Field(16, ge=1, le=32)
    """deepest nesting of the `context` object for /voice/start (`{}` is 1 level)"""
    rate_limit_per_minute: int = Field(60, ge=1)
    """`POST /voice/start` calls per API key per minute"""
    publishable_rate_limit_per_minute: int = Field(10, ge=1)
    """`POST /voice/start` calls per publishable key per minute, unless the key sets its own"""
    rate_limit_store: Literal["database", "memory"] = "database"
    """where the rate limits are kept: `database` (shared by every API process and host: a key
    gets its rate in all of them together) or `memory` (each process its own; one process only)"""
    publishable_max_open_sessions: int = Field(2, ge=1)
    """sessions a publishable key may have open (starting or active) at once, unless the key
    sets its own; one more is refused with `429 too_many_sessions` (secret keys: no cap
    unless the key sets one)"""
    metrics_enabled: bool = True
    """serve the API's Prometheus `/metrics` (unauthenticated, like any scrape target: block
    `/metrics` at your public proxy, or turn it off here)"""
    web_demo: bool | None = None
    """serve the demo page at `/demo` with a server-side session route using the dev key;
    default: on when `env` is `dev`, off otherwise"""

    # --- LiveKit ----------------------------------------------------------------------------
    livekit_url: str = "http://127.0.0.1:7880"
    """LiveKit server URL the API and worker use"""
    public_livekit_url: str | None = None
    """LiveKit URL handed to clients (`livekit_url`); default: `livekit_url` as ws(s)://"""
    livekit_api_key: str | None = None
    """LiveKit API key; `thinnest dev` generates one"""
    livekit_api_secret: SecretStr | None = None
    """LiveKit API secret; `thinnest dev` generates one"""
    livekit_server_bin: Path | None = None
    """livekit-server binary for `thinnest dev`; default: the venv, `.tools/bin`, then PATH"""
    livekit_port: int = Field(7880, ge=1, le=65535)
    """HTTP/WebSocket port of the dev LiveKit server"""
    livekit_rtc_tcp_port: int = Field(7881, ge=1, le=65535)
    """ICE/TCP port of the dev LiveKit server"""
    livekit_udp_port_start: int = Field(50000, ge=1, le=65535)
    """first UDP port of the dev LiveKit server"""
    livekit_udp_port_end: int = Field(50200, ge=1, le=65535)
    """last UDP port of the dev LiveKit server"""
    livekit_timeout: float = Field(5.0, gt=0)
    """seconds to wait for a LiveKit API call"""
    agent_name: str = "thinnest"
    """agent name the voice engine registers for dispatch"""
    room_empty_timeout: int = Field(120, ge=1)
    """seconds a session room waits for its first participant"""
    room_departure_timeout: int = Field(20, ge=0)
    """seconds a room lives on after the last participant left"""
    no_show_timeout: float = Field(30.0, gt=0)
    """seconds the voice engine waits for the caller to join before it ends the session as
    `no_show` and frees its slot; below `room_empty_timeout`, so the engine, not LiveKit,
    ends an unjoined session"""
    no_capacity_retry_after: int = Field(10, ge=1)
    """`Retry-After` seconds of a `503 no_capacity` answer (every worker's slots are taken)
    and of a `429 too_many_sessions` one (the key's open sessions are at its cap)"""

    sweep_interval: float = Field(30.0, gt=0)
    """seconds between checks for active sessions whose room is gone (the backstop); of several
    API processes on one database, one sweeps (a lease in the database), another takes over
    within three intervals when it stops"""

    # --- Operator console (`/console`) ------------------------------------------------------
    console_enabled: bool = True
    """whether the API serves the operator console at `/console` (sign-in with a secret API
    key; the browser keeps a session cookie, never the key)"""
    console_session_hours: float = Field(12.0, gt=0, le=720)
    """hours a console sign-in lasts before it asks for the key again"""

    # --- Webhooks (`/webhooks`; sent through the tools' SSRF guard and its settings) --------
    webhook_send: bool = True
    """whether this API process sends the webhook deliveries that are due (off: it still
    queues them, and another API process on the same database sends them)"""
    webhook_poll_interval: float = Field(1.0, gt=0)
    """seconds between an API process's looks for webhook deliveries that are due"""
    webhook_timeout: float = Field(10.0, gt=0, le=60)
    """seconds one webhook attempt may take (connect, send, the start of the answer) before
    it counts as failed and is retried"""
    webhook_retry_base: float = Field(10.0, gt=0)
    """seconds before the first retry of a failed webhook delivery; each next wait is four
    times longer (at most 6 hours)"""
    webhook_retry_window: float = Field(86400.0, gt=0)
    """seconds after its event a webhook delivery is retried for; then it is marked failed"""
    webhook_concurrency: int = Field(8, ge=1, le=64)
    """webhook requests an API process has in flight at once (two at most per endpoint)"""

    # --- WebSocket gateway (`websocket_url`) ------------------------------------------------
    gateway_max_frame_bytes: int = Field(65536, ge=1024)
    """largest WebSocket message a client may send; a bigger one closes with 1009"""
    gateway_max_messages_per_second: int = Field(100, ge=1)
    """messages a second a WebSocket client may send (bursts of twice that); over it: 1008"""
    gateway_idle_timeout: float = Field(30.0, gt=0)
    """seconds without a message from a WebSocket client before it is closed with 4408"""
    gateway_audio_buffer_ms: int = Field(1000, ge=20)
    """agent audio (ms) queued for a WebSocket client that reads slowly; older audio is
    dropped beyond it (events never are)"""

    # --- Calls ------------------------------------------------------------------------------
    max_call_duration: int = Field(3600, ge=10)
    """upper bound of any call's `max_duration`, seconds"""
    default_max_duration: int = Field(600, ge=10)
    """`max_duration` of a new agent, seconds"""

    # --- Voice engine -----------------------------------------------------------------------
    worker_idle_processes: int = Field(2, ge=1, le=64)
    """job processes each `thinnest worker` keeps prewarmed (models loaded, ready for a call);
    with one, a call that arrives while another is starting finds the worker full"""
    worker_prewarm_nice: int = Field(10, ge=0, le=19)
    """nice value of a job process while it prewarms (loads models), so a replacement process
    does not slow the call that just began; a call sets 0 back (needs root or CAP_SYS_NICE);
    0 turns this off"""
    worker_heartbeat_interval: float = Field(5.0, gt=0)
    """seconds between a worker's heartbeats; three missed ones and it counts as gone"""
    worker_drain_timeout: float = Field(600.0, gt=0)
    """seconds a stopping worker (SIGTERM) gives its calls to end before it cuts them; it takes
    no new call meanwhile. Set your process manager's stop timeout above it"""
    require_worker: bool = True
    """`POST /voice/start` answers 503 while no voice engine worker is alive"""
    worker_max_jobs: int | None = Field(None, ge=1, le=256)
    """concurrent calls one `thinnest worker` takes before LiveKit sends calls elsewhere;
    default: counted from the machine's cores and free memory and what a call measured
    costs (`thinnest bench concurrency`): 4 on 2 cores"""
    worker_metrics_port: int = Field(0, ge=0, le=65535)
    """port of a worker's Prometheus `/metrics` (its calls, turn latencies, provider errors,
    capacity: docs/metrics.md); 0 (default) serves none, since workers that share a host
    need a port each"""
    worker_metrics_host: str = "127.0.0.1"
    """address a worker's `/metrics` binds; `0.0.0.0` lets a Prometheus on another host
    scrape it (the figures hold no secret, but keep the port on a private network)"""
    otlp_traces_endpoint: str | None = None
    """OTLP/HTTP URL (`http://collector:4318/v1/traces`) the workers send each call's
    OpenTelemetry traces to (livekit-agents' spans of its turns); default: no traces"""
    otlp_traces_content: bool = False
    """keep transcripts, prompts and tool payloads in the traces (they hold what callers
    said); off: livekit-agents strips them before export"""
    recordings_dir: Path | None = None
    """where call recordings are written; default `<data_dir>/recordings`"""
    endpointing_min_delay: float = Field(0.3, ge=0.0, le=5.0)
    """seconds after the end of speech before the agent answers a finished sentence"""
    endpointing_max_delay: float = Field(2.5, ge=0.1, le=10.0)
    """longest wait after the end of speech when the turn detector expects more words"""
    interruption_min_duration: float = Field(0.5, ge=0.05, le=3.0)
    """seconds of the caller's voice over the agent before the agent's audio pauses (shorter:
    a faster barge-in, and a longer "mm-hmm" pauses the agent too)"""
    false_interruption_timeout: float = Field(1.5, ge=0.2, le=10.0)
    """seconds after the caller's voice ends before a paused reply resumes when no words
    (or only a backchannel) were heard"""
    speech_rules: bool = True
    """tell every agent, before its own instructions, how to answer by voice (short plain
    sentences, no lists or markup); off: the agent's instructions alone"""
    preemptive_tts: bool = True
    """synthesise the drafted answer before the end of turn is confirmed (faster first
    audio; wasted CPU when the user speaks on)"""
    provider_timeout: float = Field(10.0, gt=0, le=120)
    """seconds a cloud STT/LLM/TTS request may stay silent before it counts as failed"""
    provider_retries: int = Field(1, ge=0, le=5)
    """retries of a failed or timed-out provider request before the turn fails"""
    provider_max_failures: int = Field(3, ge=1, le=20)
    """failed turns in a row (the agent apologises after each) before the call ends with
    reason `error`"""
    tool_secrets: dict[str, SecretStr] = Field(default_factory=dict)
    """JSON object of secrets HTTP tools may use in headers as `${secret:NAME}`"""
    tools_allow_private: bool = False
    """let HTTP tools call loopback, private, link-local and other non-public addresses (off:
    the SSRF guard; turn on only where agents' tool URLs are trusted)"""
    tools_allow_loopback: bool | None = None
    """let HTTP tools call loopback addresses (a developer's tool server on localhost);
    default: on when `env` is `dev` (which runs on loopback only), off otherwise"""
    tools_allowed_networks: list[str] = Field(default_factory=list)
    """JSON list of hosts and CIDRs HTTP tools may call even though they are not public, such
    as `["10.1.2.0/24", "tools.internal"]`"""

    # --- Shared model services (`thinnest models`) ------------------------------------------
    models_url: str | None = Field(None, pattern="^https?://")
    """base URL of the shared model service (`thinnest models`), such as
    `http://10.0.0.5:8790`: the offline providers (whisper, llama, hibari, piper) are then its
    clients and a call's process loads no model; unset, each job process loads its own
    (`thinnest dev` sets it to the service it starts)"""
    models_host: str = "127.0.0.1"
    """address `thinnest models` binds"""
    models_port: int = Field(8790, ge=1, le=65535)
    """port of `thinnest models` (its own HTTP endpoints and the LLM behind it)"""
    llama_server_bin: Path | None = None
    """llama.cpp's `llama-server` for `thinnest models`; default: `.tools/bin`, then PATH"""
    models_llm_slots: int = Field(4, ge=1, le=64)
    """answers the shared LLM generates at once (llama-server's parallel slots, batched)"""
    models_threads: int | None = Field(None, ge=1, le=256)
    """CPU threads of each shared model; default: the machine's cores"""

    # --- Providers (offline models and cloud vendors) ---------------------------------------
    models_dir: Path | None = None
    """joined model files; default `<data_dir>/models`"""
    openai_api_key: SecretStr | None = None
    """key of an OpenAI-compatible LLM endpoint"""
    openai_base_url: str | None = None
    """base URL of an OpenAI-compatible LLM endpoint"""
    deepgram_api_key: SecretStr | None = None
    """Deepgram STT key"""
    google_api_key: SecretStr | None = None
    """Google (Gemini / STT) key"""
    elevenlabs_api_key: SecretStr | None = None
    """ElevenLabs TTS key"""
    cartesia_api_key: SecretStr | None = None
    """Cartesia TTS key"""

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.livekit_udp_port_end < self.livekit_udp_port_start:
            raise ValueError("livekit_udp_port_end must not be below livekit_udp_port_start")
        if self.endpointing_max_delay < self.endpointing_min_delay:
            raise ValueError("endpointing_max_delay must not be below endpointing_min_delay")
        if self.default_max_duration > self.max_call_duration:
            raise ValueError("default_max_duration must not exceed max_call_duration")
        if self.no_show_timeout >= self.room_empty_timeout:
            raise ValueError(
                "no_show_timeout must be below room_empty_timeout (LiveKit would close the "
                "room under the engine and the session would end as an error)"
            )
        if self.env == "dev" and (self.livekit_api_key is None or self.livekit_api_secret is None):
            creds = self.dev_credentials()
            if creds:
                self.livekit_api_key = self.livekit_api_key or creds.get("livekit_api_key")
                if self.livekit_api_secret is None and creds.get("livekit_api_secret"):
                    self.livekit_api_secret = SecretStr(creds["livekit_api_secret"])
        if self.env == "production":
            secret = self.livekit_api_secret.get_secret_value() if self.livekit_api_secret else ""
            if not self.livekit_api_key or not secret:
                raise ValueError(
                    "production needs THINNEST_LIVEKIT_API_KEY and THINNEST_LIVEKIT_API_SECRET"
                )
            if secret.lower() in _PLACEHOLDER_SECRETS or len(secret) < 32:
                raise ValueError(
                    "THINNEST_LIVEKIT_API_SECRET is a placeholder or shorter than 32 characters"
                )
        return self

    # --- derived values ---------------------------------------------------------------------
    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'thinnest.db').resolve()}"

    @property
    def resolved_public_base_url(self) -> str:
        return (self.public_base_url or f"http://{self.api_host}:{self.api_port}").rstrip("/")

    @property
    def resolved_public_livekit_url(self) -> str:
        url = self.public_livekit_url or self.livekit_url
        return _as_websocket_url(url).rstrip("/")

    @property
    def internal_livekit_ws_url(self) -> str:
        """``livekit_url`` as the ws(s):// URL LiveKit's rtc SDK connects to (this host's own
        way in, not the public one)."""
        return _as_websocket_url(self.livekit_url).rstrip("/")

    @property
    def resolved_web_demo(self) -> bool:
        return self.env == "dev" if self.web_demo is None else self.web_demo

    @property
    def resolved_tools_allow_loopback(self) -> bool:
        if self.tools_allow_loopback is None:
            return self.env == "dev"
        return self.tools_allow_loopback

    @property
    def resolved_recordings_dir(self) -> Path:
        return self.recordings_dir or self.data_dir / "recordings"

    @property
    def resolved_models_dir(self) -> Path:
        return self.models_dir or self.data_dir / "models"

    def websocket_url(self, session_id: str) -> str:
        """The contract's ``websocket_url`` of a session."""
        return f"{_as_websocket_url(self.resolved_public_base_url)}/ws/{session_id}"

    def livekit_credentials(self) -> tuple[str, str]:
        """The LiveKit API key and secret, or a :class:`ConfigError` saying how to set them."""
        if not self.livekit_api_key or self.livekit_api_secret is None:
            raise ConfigError(
                "LiveKit credentials are not set: run `thinnest dev` once (it generates them) "
                "or set THINNEST_LIVEKIT_API_KEY and THINNEST_LIVEKIT_API_SECRET",
                code="livekit_not_configured",
            )
        return self.livekit_api_key, self.livekit_api_secret.get_secret_value()

    def dev_credentials(self) -> dict[str, str]:
        """What ``thinnest dev`` generated in the data directory, or ``{}``."""
        path = self.data_dir / DEV_CREDENTIALS_FILE
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        return {k: str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _as_websocket_url(url: str) -> str:
    if url.startswith("https://"):
        return "wss://" + url.removeprefix("https://")
    if url.startswith("http://"):
        return "ws://" + url.removeprefix("http://")
    return url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once from the environment."""
    try:
        return Settings()
    except ValueError as exc:
        raise ConfigError(f"invalid THINNEST_* settings: {exc}") from exc
