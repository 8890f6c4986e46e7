// Page start-up: the authority token and the connection made with it, the one set-up
// every page that reads the live feed (or the replay) starts from.
//
// `startSession({ connect })` takes the stored token (asking for it in the page's token
// dialog if there is none, unless `ask` is false), then calls `connect(token, session)` for
// the page's connection. The page's Token button and `session.relogin(message)` (the server
// refused the token) ask again and connect anew with the new token, the old connection
// closed first.

import { ensureToken, storedToken } from "./api.js";
import { $ } from "./dom.js";
import { connectLive, mountIndicator } from "./live.js";

export const REFUSED = "The server refused that token.";

export async function startSession({ connect = () => null, ask = true } = {}) {
  let token = "";
  let connection = null;
  const session = {
    token: () => token,
    connection: () => connection,
    // Ask for the token again; `reconnect: false` keeps the connection as it is (a command
    // was refused, not the feed).
    async relogin(message = "", { reconnect = true } = {}) {
      token = await ensureToken({ force: true, message });
      if (reconnect) {
        connection?.close();
        connection = connect(token, session);
      }
      return token;
    },
  };
  $("#change-token")?.addEventListener("click", () => session.relogin());
  token = ask ? await ensureToken() : storedToken();
  connection = connect(token, session);
  return session;
}

// A `connect` for startSession: the live connection (live.js) into `state`, shown in the
// page's #live-indicator (mounted now, so it says "connecting" while the token is asked
// for). `options` are connectLive's, or a function of the token returning them (they may
// set `token` to null: a connection that needs none); a refused token asks for another one.
export function liveConnection(state, options = {}) {
  const indicator = mountIndicator($("#live-indicator"), state);
  return (token, session) => connectLive(state, {
    onUnauthorized: () => session.relogin(REFUSED),
    token,
    ...(typeof options === "function" ? options(token) : options),
    onStatus: indicator,
  });
}
