// The LiveKit pattern, unchanged: get {livekit_url, token} from your backend, render
// <LiveKitRoom>, and read the agent with useVoiceAssistant(). Thinnest's engine publishes
// LiveKit's standard agent state and transcription streams, so nothing here is specific to it
// except the "thinnest" data topic read for the user's side of the transcript.
import {
  BarVisualizer,
  LiveKitRoom,
  RoomAudioRenderer,
  useDataChannel,
  useVoiceAssistant,
} from "@livekit/components-react";
import { useCallback, useState } from "react";

const AGENT = new URLSearchParams(location.search).get("agent") || "default";

export default function App() {
  const [session, setSession] = useState(null);
  const [error, setError] = useState("");

  const start = useCallback(async () => {
    setError("");
    const resp = await fetch("/demo/session", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ agent_id: AGENT }),
    });
    const body = await resp.json();
    if (!resp.ok) return setError(body.error?.message || resp.statusText);
    setSession(body);
  }, []);

  if (!session) {
    return (
      <main className="app">
        <h1>Thinnest + React</h1>
        <button className="lk-button" onClick={start}>Talk to {AGENT}</button>
        {error && <p role="alert">{error}</p>}
      </main>
    );
  }
  return (
    <LiveKitRoom
      serverUrl={session.livekit_url}
      token={session.token}
      connect
      audio
      onDisconnected={() => setSession(null)}
      className="app"
    >
      <Assistant />
      <RoomAudioRenderer />
    </LiveKitRoom>
  );
}

function Assistant() {
  const { state, audioTrack, agentTranscriptions } = useVoiceAssistant();
  const [events, setEvents] = useState([]);
  useDataChannel("thinnest", (msg) => {
    const event = JSON.parse(new TextDecoder().decode(msg.payload));
    if (event.type === "transcript" && event.final) setEvents((all) => [...all, event]);
    if (event.type === "call_ended") setEvents((all) => [...all, event]);
  });
  return (
    <main>
      <h1>Thinnest + React</h1>
      <p>
        Agent state: <b data-testid="state">{state}</b>
      </p>
      <div style={{ height: 120 }}>
        <BarVisualizer state={state} trackRef={audioTrack} barCount={7} />
      </div>
      <h2>Agent (transcription stream)</h2>
      <ul data-testid="agent-transcriptions">
        {agentTranscriptions.map((s) => (
          <li key={s.id}>{s.text}</li>
        ))}
      </ul>
      <h2>Events (data channel)</h2>
      <ul data-testid="events">
        {events.map((e, i) => (
          <li key={i} data-role={e.role || e.type}>
            {e.type === "call_ended" ? `call ended (${e.reason})` : `${e.role}: ${e.text}`}
          </li>
        ))}
      </ul>
    </main>
  );
}
