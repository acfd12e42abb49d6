// The Thinnest demo page: start a session through the page's own server route (the API key
// stays on the server), join the LiveKit room, publish the microphone, play the agent, and
// show transcripts, the agent's state, audio levels and per-turn latency.
// Plain browser JavaScript over the global `LivekitClient` (the bundled livekit-client).
(() => {
  "use strict";
  const LK = window.LivekitClient;
  const $ = (id) => document.getElementById(id);
  const TOPIC = "thinnest";
  const NO_AGENT_AFTER_MS = 20000;
  // Why a call ended (call_ended.reason), in words.
  const END_REASONS = {
    user_left: "you hung up",
    agent_ended: "the agent ended the call",
    max_duration: "the call reached its time limit (max_duration)",
    ended_by_api: "it was ended through the API",
    no_show: "the call was not joined in time",
    room_closed: "the call's room was closed",
    error: "something went wrong in the voice engine (see the worker's log)",
  };
  // Why LiveKit disconnected the page without a call_ended, in words.
  const DISCONNECTS = {
    ROOM_DELETED: "the call's room was closed",
    PARTICIPANT_REMOVED: "this page was removed from the call",
    DUPLICATE_IDENTITY: "the same session was joined from another tab or device",
    SERVER_SHUTDOWN: "the LiveKit server shut down",
    JOIN_FAILURE: "the room could not be joined",
    SIGNAL_CLOSE: "the connection to LiveKit was lost",
    STATE_MISMATCH: "the connection to LiveKit was lost",
  };

  // What the page saw, for people debugging and for the browser tests.
  const demo = (window.thinnestDemo = {
    status: "idle",
    agentState: "",
    agentPeak: 0,
    userPeak: 0,
    events: [],
    problem: "",
  });

  let room = null;
  let session = null;
  let audioCtx = null;
  let micTrack = null;
  let meters = [];
  let agentTimer = null;
  let ended = false;
  let hungUp = false;
  const items = new Map();
  let turn = null;
  let turns = 0;

  function setStatus(status) {
    demo.status = status;
    $("call-status").textContent = status;
    $("call-status").dataset.status = status;
    const inCall = status === "connecting" || status === "connected";
    $("call").disabled = inCall || !$("agent").value;
    $("hangup").disabled = !inCall;
    $("agent").disabled = inCall;
  }

  function problem(text) {
    demo.problem = text || "";
    $("problem").textContent = text || "";
    $("problem").hidden = !text;
  }

  function setAgentState(state) {
    if (!state || state === demo.agentState) return;
    demo.agentState = state;
    $("agent-state").textContent = state;
    $("agent-state").dataset.state = state;
  }

  function resetAgentState() {
    demo.agentState = "";
    $("agent-state").textContent = "–";
    $("agent-state").dataset.state = "";
  }

  function showEnded(reasonText, code) {
    const el = $("call-ended");
    el.textContent = `Call ended: ${reasonText}.`;
    el.dataset.reason = code;
    el.hidden = false;
  }

  async function api(path, body) {
    let resp;
    try {
      resp = await fetch(path, {
        method: body === undefined ? "GET" : "POST",
        headers: body === undefined ? {} : { "Content-Type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      throw new Error("The Thinnest API is not reachable: is `thinnest dev` still running?");
    }
    const data = await resp.json().catch(() => ({}));
    if (!resp.ok) {
      const message = (data.error && data.error.message) || resp.statusText;
      throw new Error(`${message} (HTTP ${resp.status})`);
    }
    return data;
  }

  async function loadAgents() {
    try {
      const agents = await api("/demo/agents");
      const select = $("agent");
      select.replaceChildren(
        ...agents.map((a) => {
          const opt = document.createElement("option");
          opt.value = a.id;
          opt.textContent = a.name;
          return opt;
        }),
      );
      // The console's "Test call" opens /demo?agent=<id>: preselect that agent.
      const wanted = new URLSearchParams(location.search).get("agent");
      if (wanted && agents.some((a) => a.id === wanted)) select.value = wanted;
      if (!agents.length) problem("No agents yet: create one with `thinnest agents create NAME`.");
    } catch (err) {
      problem(err.message);
    }
    setStatus("idle");
  }

  // --- audio levels (Web Audio) --------------------------------------------------------------
  function meter(mediaStreamTrack, barId, peakKey) {
    const source = audioCtx.createMediaStreamSource(new MediaStream([mediaStreamTrack]));
    const analyser = audioCtx.createAnalyser();
    analyser.fftSize = 1024;
    source.connect(analyser);
    const buf = new Float32Array(analyser.fftSize);
    const m = { source, analyser, buf, barId, peakKey };
    meters.push(m);
    return m;
  }

  function drawMeters() {
    for (const m of meters) {
      m.analyser.getFloatTimeDomainData(m.buf);
      let sum = 0;
      for (const v of m.buf) sum += v * v;
      const rms = Math.sqrt(sum / m.buf.length);
      demo[m.peakKey] = Math.max(demo[m.peakKey], rms);
      $(m.barId).style.width = `${Math.min(100, rms * 400)}%`;
    }
    if (meters.length) requestAnimationFrame(drawMeters);
  }

  // --- transcript and events -----------------------------------------------------------------
  function showTranscript(msg) {
    const key = msg.id || `${msg.role}-live`;
    let li = items.get(key);
    if (!li) {
      li = document.createElement("li");
      li.className = msg.role;
      li.dataset.role = msg.role;
      const who = document.createElement("span");
      who.className = "who";
      who.textContent = msg.role === "user" ? "You" : "Agent";
      li.append(who, document.createElement("span"));
      $("transcript").append(li);
      items.set(key, li);
    }
    li.lastChild.textContent = msg.text;
    li.classList.toggle("interim", !msg.final);
    li.dataset.final = String(Boolean(msg.final));
    if (msg.final && !msg.id) items.delete(key);
    li.scrollIntoView({ block: "nearest" });
  }

  // A tool the agent called, in the transcript; a failed one with its error.
  function showToolCall(msg) {
    const li = document.createElement("li");
    li.className = msg.error ? "tool failed" : "tool";
    li.dataset.role = "tool";
    li.dataset.tool = msg.name;
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = `Tool ${msg.name}`;
    const what = document.createElement("span");
    what.textContent = msg.error
      ? `failed: ${msg.error}`
      : `called with ${JSON.stringify(msg.arguments)}`;
    li.append(who, what);
    $("transcript").append(li);
    li.scrollIntoView({ block: "nearest" });
  }

  const seconds = (v) => (typeof v === "number" ? `${v.toFixed(2)} s` : "–");

  function showMetrics(msg) {
    if (msg.role === "user" || !turn) {
      turns += 1;
      const tr = document.createElement("tr");
      tr.innerHTML = "<td></td><td></td><td></td><td></td><td></td><td></td>";
      tr.cells[0].textContent = String(turns);
      $("latency").append(tr);
      turn = { tr, done: false };
    }
    const c = turn.tr.cells;
    if (msg.role === "user") {
      c[2].textContent = seconds(msg.end_of_turn_delay);
      c[3].textContent = seconds(msg.stt);
    } else {
      c[1].textContent = seconds(msg.voice_to_voice);
      c[4].textContent = seconds(msg.llm_ttft);
      c[5].textContent = seconds(msg.tts_ttfb);
      turn = null;
    }
  }

  function onEvent(msg) {
    demo.events.push(msg);
    switch (msg.type) {
      case "transcript":
        showTranscript(msg);
        break;
      case "agent_state":
        setAgentState(msg.state);
        break;
      case "metrics":
        showMetrics(msg);
        break;
      case "error":
        problem(`The agent reported a problem: ${msg.message}`);
        break;
      case "tool_call":
        showToolCall(msg);
        break;
      case "call_ended": {
        ended = true;
        const why = END_REASONS[msg.reason] || `reason ${msg.reason}`;
        showEnded(`${why}, after ${Number(msg.duration).toFixed(1)} s`, msg.reason);
        setTimeout(() => room && room.disconnect(), 1000);
        break;
      }
    }
  }

  // --- the call ------------------------------------------------------------------------------
  async function call() {
    problem("");
    ended = false;
    hungUp = false;
    items.clear();
    turn = null;
    $("transcript").replaceChildren();
    $("latency").replaceChildren();
    $("call-ended").hidden = true;
    setStatus("connecting");
    audioCtx = audioCtx || new AudioContext();
    await audioCtx.resume();

    // The microphone first: a denied microphone must not leave a session behind.
    try {
      [micTrack] = await LK.createLocalTracks({ audio: { echoCancellation: true, noiseSuppression: true } });
    } catch (err) {
      setStatus("idle");
      const denied = err && (err.name === "NotAllowedError" || err.name === "SecurityError");
      problem(
        denied
          ? "Microphone access was denied. Allow the microphone for this page (the icon in the address bar), then press Call again."
          : `No usable microphone (${err && err.message}). Plug one in or check the system's sound settings, then press Call again.`,
      );
      return;
    }
    meter(micTrack.mediaStreamTrack, "user-level", "userPeak");
    requestAnimationFrame(drawMeters);

    try {
      session = await api("/demo/session", { agent_id: $("agent").value });
    } catch (err) {
      cleanup();
      setStatus("idle");
      problem(`Could not start a session: ${err.message}`);
      return;
    }

    room = new LK.Room({ adaptiveStream: false, dynacast: false });
    room
      .on(LK.RoomEvent.DataReceived, (payload, _participant, _kind, topic) => {
        if (topic && topic !== TOPIC) return;
        try {
          onEvent(JSON.parse(new TextDecoder().decode(payload)));
        } catch (err) {
          console.warn("not a Thinnest event", err);
        }
      })
      .on(LK.RoomEvent.TrackSubscribed, (track, _pub, participant) => {
        if (track.kind !== LK.Track.Kind.Audio) return;
        clearTimeout(agentTimer);
        const el = track.attach();
        el.id = "agent-audio";
        document.body.append(el);
        meter(track.mediaStreamTrack, "agent-level", "agentPeak");
        demo.agentIdentity = participant.identity;
      })
      .on(LK.RoomEvent.TrackUnsubscribed, (track) => track.detach().forEach((el) => el.remove()))
      .on(LK.RoomEvent.ParticipantAttributesChanged, (_changed, participant) => {
        const state = participant.attributes && participant.attributes["lk.agent.state"];
        if (state) setAgentState(state);
      })
      .on(LK.RoomEvent.AudioPlaybackStatusChanged, () => {
        $("unmute-audio").hidden = room.canPlaybackAudio;
      })
      .on(LK.RoomEvent.Reconnecting, () => problem("Connection lost, reconnecting…"))
      .on(LK.RoomEvent.Reconnected, () => problem(""))
      .on(LK.RoomEvent.Disconnected, (reason) => {
        if (!ended && hungUp) {
          showEnded("you hung up", "user_left");
        } else if (!ended && demo.status === "connected") {
          const name = LK.DisconnectReason[reason];
          problem(`The call was disconnected: ${DISCONNECTS[name] || "the connection was lost"}.`);
        }
        cleanup();
        setStatus("ended");
      });

    try {
      await room.connect(session.livekit_url, session.token);
    } catch (err) {
      cleanup();
      setStatus("idle");
      const refused = err && (err.status === 401 || err.status === 403);
      problem(
        refused
          ? "LiveKit refused the session token (expired after 10 minutes, or for another server). Press Call again for a fresh session."
          : `Could not connect to LiveKit at ${session.livekit_url} (${err && err.message}). ` +
            "Check that the LiveKit server is running and reachable; where UDP is blocked, LiveKit falls back to TCP (port 7881 in dev) or TURN if the server offers it.",
      );
      return;
    }
    setStatus("connected");
    demo.sessionId = session.session_id;
    // Reopens the microphone (a device change does the same); the browser tests use it to
    // replay their recorded question once the agent listens.
    demo.restartMicrophone = () => micTrack && micTrack.restartTrack();
    await room.localParticipant.publishTrack(micTrack);
    await room.startAudio().catch(() => {});
    $("unmute-audio").hidden = room.canPlaybackAudio;
    agentTimer = setTimeout(() => {
      if (!ended) {
        problem(
          "No agent audio yet: the voice engine has not joined. Is `thinnest worker` running (`thinnest dev` starts one)? See its log.",
        );
      }
    }, NO_AGENT_AFTER_MS);
  }

  async function hangUp() {
    $("hangup").disabled = true;
    hungUp = true;
    if (session && !ended) {
      // The API asks the engine to end: it sends call_ended before the room closes.
      await api(`/demo/session/${encodeURIComponent(session.session_id)}/end`, {}).catch((err) =>
        problem(`Hanging up: ${err.message}`),
      );
    }
    setTimeout(() => room && room.disconnect(), ended ? 0 : 3000);
  }

  function cleanup() {
    clearTimeout(agentTimer);
    for (const m of meters) m.source.disconnect();
    meters = [];
    for (const id of ["user-level", "agent-level"]) $(id).style.width = "0";
    if (micTrack) micTrack.stop();
    micTrack = null;
    document.querySelectorAll("#agent-audio").forEach((el) => el.remove());
    $("unmute-audio").hidden = true;
    resetAgentState();
    room = null;
  }

  $("call").addEventListener("click", () => call().catch((err) => problem(String(err))));
  $("hangup").addEventListener("click", () => hangUp());
  $("agent").addEventListener("change", () => setStatus(demo.status));
  $("unmute-audio").addEventListener("click", () => room && room.startAudio());
  if (!LK) {
    problem("The LiveKit client bundle did not load: run `scripts/setup.sh` (it builds /web/livekit-client.js).");
  } else {
    loadAgents();
  }
})();
