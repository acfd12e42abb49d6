/*! Thinnest Voice Widget: one <script> tag adds a floating call button to any page.
 *
 * <script src="https://YOUR-THINNEST/web/widget.js" async
 *   data-agent="support" data-key="tn_pk_…"
 *   data-color="#1f7a4d" data-text-color="#ffffff" data-position="bottom-right"
 *   data-greeting="Questions? Talk to us" data-language="en"></script>
 *
 * No framework. The LiveKit client is loaded from the same Thinnest server on the first call.
 * The key is a publishable key: it only starts calls with its agents, from its origins.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || window.ThinnestWidget) return;
  var d = script.dataset;
  var base = (d.api || new URL(script.src, location.href).origin).replace(/\/$/, "");
  var lang = (d.language || document.documentElement.lang || "en").slice(0, 2).toLowerCase();
  var TEXT = {
    en: { call: "Start a voice call", end: "End the voice call", connecting: "Connecting…",
      listening: "Listening", thinking: "Thinking…", speaking: "Speaking", ended: "Call ended",
      micDenied: "Microphone access was denied. Allow the microphone for this site in the browser's address bar, then try again.",
      noMic: "No microphone was found. Connect one and try again.",
      network: "Could not reach the voice service. Check your connection and try again.",
      connect: "Could not connect the call (the network may block it). Try again, or from another network.",
      lost: "The call was disconnected. Press the button to call again.",
      busy: "Too many calls right now. Try again in a minute.",
      unavailable: "Voice calls are not available on this website right now.",
      noAgent: "The assistant did not answer. Please try again later." },
    de: { call: "Sprachanruf starten", end: "Sprachanruf beenden", connecting: "Verbinde…",
      listening: "Hört zu", thinking: "Denkt nach…", speaking: "Spricht", ended: "Anruf beendet",
      micDenied: "Der Mikrofonzugriff wurde verweigert. Erlauben Sie das Mikrofon in der Adressleiste und versuchen Sie es erneut.",
      noMic: "Kein Mikrofon gefunden. Schließen Sie eines an und versuchen Sie es erneut.",
      network: "Der Sprachdienst ist nicht erreichbar. Prüfen Sie die Verbindung.",
      connect: "Der Anruf konnte nicht verbunden werden (Netzwerk blockiert?).",
      lost: "Die Verbindung wurde getrennt. Drücken Sie den Knopf für einen neuen Anruf.",
      busy: "Gerade zu viele Anrufe. Bitte gleich noch einmal.",
      unavailable: "Sprachanrufe sind auf dieser Website gerade nicht verfügbar.",
      noAgent: "Der Assistent hat nicht geantwortet. Bitte später erneut versuchen." },
  };
  var t = TEXT[lang] || TEXT.en;
  var color = d.color || "#1f7a4d";
  var textColor = d.textColor || "#ffffff";
  var pos = (d.position || "bottom-right").split("-");

  var host = document.createElement("div");
  host.setAttribute("data-thinnest-widget", "");
  var root = host.attachShadow ? host.attachShadow({ mode: "open" }) : host;
  var side = pos[1] === "left" ? "left" : "right";
  var edge = pos[0] === "top" ? "top" : "bottom";
  root.innerHTML =
    "<style>" +
    ".w{position:fixed;" + edge + ":20px;" + side + ":20px;z-index:2147483000;display:flex;flex-direction:" +
    (edge === "top" ? "column" : "column-reverse") + ";align-items:" + (side === "left" ? "flex-start" : "flex-end") +
    ";gap:8px;font:15px/1.4 system-ui,sans-serif}" +
    "button{width:60px;height:60px;border-radius:50%;border:0;cursor:pointer;background:" + color + ";color:" + textColor +
    ";box-shadow:0 4px 14px rgba(0,0,0,.25);display:grid;place-items:center}" +
    "button:focus-visible{outline:3px solid #6aa7ff;outline-offset:3px}" +
    "button[aria-pressed=true]{background:#b3261e}" +
    "svg{width:28px;height:28px;fill:currentColor}" +
    ".p{max-width:280px;background:#fff;color:#1b1f24;border-radius:12px;padding:10px 12px;box-shadow:0 4px 14px rgba(0,0,0,.18)}" +
    ".p[hidden]{display:none}.e{color:#b3261e}.s{font-weight:600}.c{margin-top:4px;color:#3b424b}" +
    ".lv{height:4px;background:#e6e9ee;border-radius:2px;margin-top:6px;overflow:hidden}.lv>i{display:block;height:100%;width:0;background:" + color + "}" +
    "</style>" +
    '<div class="w"><button type="button" aria-pressed="false"></button>' +
    '<div class="p" role="status" aria-live="polite"><div class="s"></div><div class="c"></div><div class="lv" hidden><i></i></div></div></div>';
  var button = root.querySelector("button");
  var panel = root.querySelector(".p");
  var statusEl = root.querySelector(".s");
  var caption = root.querySelector(".c");
  var levelBox = root.querySelector(".lv");
  var level = root.querySelector(".lv > i");
  var MIC = '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M12 14a3 3 0 0 0 3-3V5a3 3 0 0 0-6 0v6a3 3 0 0 0 3 3zm5-3a5 5 0 0 1-10 0H5a7 7 0 0 0 6 6.9V21h2v-3.1A7 7 0 0 0 19 11h-2z"/></svg>';
  var HANG = '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M12 9c-1.6 0-3.1.3-4.6.7v3.1c0 .4-.2.7-.6.9-1 .5-1.8 1.1-2.6 1.8-.2.2-.4.3-.7.3s-.5-.1-.7-.3L.3 13c-.2-.2-.3-.4-.3-.7s.1-.5.3-.7C3.3 8.8 7.4 7 12 7s8.7 1.8 11.7 4.6c.2.2.3.4.3.7s-.1.5-.3.7l-2.5 2.5c-.2.2-.4.3-.7.3s-.5-.1-.7-.3c-.8-.7-1.6-1.3-2.6-1.8-.4-.2-.6-.5-.6-.9V9.7C15.1 9.3 13.6 9 12 9z"/></svg>';

  var W = (window.ThinnestWidget = { state: "idle", error: "", agentPeak: 0, captions: [], hangUp: hangUp });
  var room = null, mic = null, ctx = null, analyser = null, buf = null, agentTimer = null;

  function show(state, message, isError) {
    W.state = state;
    statusEl.textContent = message || "";
    statusEl.className = isError ? "s e" : "s";
    if (isError) W.error = message;
    var inCall = state === "connecting" || state === "in-call";
    button.setAttribute("aria-pressed", String(inCall));
    button.setAttribute("aria-label", inCall ? t.end : t.call + (d.agentName ? ": " + d.agentName : ""));
    button.innerHTML = inCall ? HANG : MIC;
    levelBox.hidden = state !== "in-call";
    panel.hidden = !message && !caption.textContent;
  }

  function loadClient() {
    if (window.LivekitClient) return Promise.resolve(window.LivekitClient);
    return new Promise(function (resolve, reject) {
      var s = document.createElement("script");
      s.src = base + "/web/livekit-client.js";
      s.onload = function () { resolve(window.LivekitClient); };
      s.onerror = function () { reject(new Error("network")); };
      document.head.appendChild(s);
    });
  }

  function fail(message) {
    cleanup();
    show("error", message, true);
  }

  function start() {
    W.error = "";
    caption.textContent = "";
    show("connecting", t.connecting);
    var LK;
    loadClient()
      .then(function (lk) {
        LK = lk;
        return LK.createLocalTracks({ audio: { echoCancellation: true, noiseSuppression: true } }).catch(function (err) {
          var denied = err && (err.name === "NotAllowedError" || err.name === "SecurityError");
          throw { shown: denied ? t.micDenied : t.noMic };
        });
      }, function () { throw { shown: t.network }; })
      .then(function (tracks) {
        mic = tracks[0];
        return fetch(base + "/voice/start", {
          method: "POST",
          headers: { "Authorization": "Bearer " + d.key, "Content-Type": "application/json" },
          body: JSON.stringify({ agent_id: d.agent, context: { language: lang, page: location.href } }),
        }).catch(function () { throw { shown: t.network }; });
      })
      .then(function (resp) {
        return resp.json().catch(function () { return {}; }).then(function (body) {
          if (resp.ok) return body;
          var e = body.error || {};
          // The server's sentence (origin, agent or key wrong, and the command that fixes it)
          // is for the site's developer, in the console; a visitor gets a short one.
          if (window.console) console.error("Thinnest widget: " + (e.message || "HTTP " + resp.status) + (e.code ? " (" + e.code + ")" : ""));
          var busy = resp.status === 429 || resp.status === 503;
          throw { shown: busy ? t.busy : resp.status >= 500 ? t.network : t.unavailable, code: e.code };
        });
      })
      .then(function (session) {
        room = new LK.Room();
        room
          .on(LK.RoomEvent.TrackSubscribed, function (track) {
            if (track.kind !== "audio") return;
            clearTimeout(agentTimer);
            var el = track.attach();
            el.setAttribute("data-thinnest-audio", "");
            document.body.appendChild(el);
            ctx = ctx || new AudioContext();
            ctx.resume();
            var src = ctx.createMediaStreamSource(new MediaStream([track.mediaStreamTrack]));
            analyser = ctx.createAnalyser();
            analyser.fftSize = 512;
            buf = new Float32Array(analyser.fftSize);
            src.connect(analyser);
            requestAnimationFrame(meter);
          })
          .on(LK.RoomEvent.ParticipantAttributesChanged, function (_c, p) {
            var s = p.attributes && p.attributes["lk.agent.state"];
            if (s && t[s]) show("in-call", t[s]);
          })
          .on(LK.RoomEvent.DataReceived, function (payload, _p, _k, topic) {
            if (topic && topic !== "thinnest") return;
            var msg;
            try { msg = JSON.parse(new TextDecoder().decode(payload)); } catch (e) { return; }
            if (msg.type === "agent_state" && t[msg.state]) show("in-call", t[msg.state]);
            if (msg.type === "transcript" && msg.role === "agent" && msg.final) {
              W.captions.push(msg.text);
              caption.textContent = msg.text;
              panel.hidden = false;
            }
            if (msg.type === "call_ended") { W.callEnded = msg; hangUp(); }
          })
          .on(LK.RoomEvent.Reconnecting, function () { show("in-call", t.connecting); })
          .on(LK.RoomEvent.Disconnected, function () {
            if (W.state === "in-call" || W.state === "connecting") fail(t.lost);
          });
        return room.connect(session.livekit_url, session.token).catch(function () { throw { shown: t.connect }; });
      })
      .then(function () {
        return room.localParticipant.publishTrack(mic);
      })
      .then(function () {
        show("in-call", t.listening);
        agentTimer = setTimeout(function () { if (!analyser) fail(t.noAgent); }, 30000);
      })
      .catch(function (err) {
        W.errorCode = err && err.code;
        fail((err && err.shown) || t.connect);
      });
  }

  function meter() {
    if (!analyser) return;
    analyser.getFloatTimeDomainData(buf);
    var sum = 0;
    for (var i = 0; i < buf.length; i++) sum += buf[i] * buf[i];
    var rms = Math.sqrt(sum / buf.length);
    if (rms > W.agentPeak) W.agentPeak = rms;
    level.style.width = Math.min(100, rms * 400) + "%";
    requestAnimationFrame(meter);
  }

  function cleanup() {
    clearTimeout(agentTimer);
    analyser = null;
    var r = room;
    room = null;
    if (r) r.disconnect();
    if (mic) mic.stop();
    mic = null;
    document.querySelectorAll("audio[data-thinnest-audio]").forEach(function (el) { el.remove(); });
  }

  function hangUp() {
    if (W.state !== "connecting" && W.state !== "in-call") return;
    W.state = "ended";
    cleanup();
    show("ended", t.ended);
  }

  button.addEventListener("click", function () {
    if (W.state === "connecting" || W.state === "in-call") hangUp();
    else start();
  });
  host.addEventListener("keydown", function (e) {
    if (e.key === "Escape") hangUp();
  });
  show("idle", d.greeting || "");
  (document.body || document.documentElement).appendChild(host);
})();
