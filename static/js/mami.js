// mami: the few behaviours htmx doesn't give us.
(function () {
  "use strict";

  // A card is ordered by (version, progress): never replace a newer one.
  function cardKey(el) {
    return [Number(el.dataset.version || 0), Number(el.dataset.progress || 0)];
  }
  function isOlder(incoming, current) {
    const a = cardKey(incoming), b = cardKey(current);
    return a[0] < b[0] || (a[0] === b[0] && a[1] < b[1]);
  }

  document.addEventListener("htmx:oobBeforeSwap", function (event) {
    const target = event.detail.target;
    const fragment = event.detail.fragment;
    const incoming = fragment && (fragment.querySelector ? fragment.querySelector("[data-version]") : null);
    if (target && target.dataset && target.dataset.version && incoming && isOlder(incoming, target)) {
      event.detail.shouldSwap = false;
      return;
    }
    keepPreview(target, fragment);
    keepUnchanged(target, fragment);
  });

  // A reply being written is re-sent 20 times a second, a card being drawn
  // several: its buttons would be new elements each time, so a click whose
  // press and release straddle a push was lost and keyboard focus was
  // dropped. A part marked data-keep that reads the same keeps its element.
  function keepUnchanged(target, fragment) {
    if (!target || !target.querySelector || !fragment || !fragment.querySelectorAll) return;
    fragment.querySelectorAll("[data-keep]").forEach(function (next) {
      const current = target.querySelector('[data-keep="' + next.dataset.keep + '"]');
      if (current && current.outerHTML === next.outerHTML) next.replaceWith(current);
    });
  }

  // Progress re-sends the whole card several times a second; the live
  // preview in it changes about twice a second. The same preview keeps its
  // element (no reload, no flicker); a new one loads over the old.
  function keepPreview(target, fragment) {
    if (!target || !target.querySelector || !fragment || !fragment.querySelector) return;
    const current = target.querySelector(".job-card__preview");
    const next = fragment.querySelector(".job-card__preview");
    if (!current || !next) return;
    if (current.dataset.preview === next.dataset.preview) {
      next.replaceWith(current);
    } else if (current.complete && current.naturalWidth) {
      next.style.backgroundImage = 'url("' + current.currentSrc + '")';
    }
  }

  // A pushed card can beat the HTTP response that inserts it; keep it and
  // apply it once its place exists.
  const waiting = new Map();
  document.body.addEventListener("htmx:oobErrorNoTarget", function (event) {
    const el = event.detail.content;
    if (el && el.id && el.dataset && el.dataset.version) {
      const held = waiting.get(el.id);
      if (!held || !isOlder(el, held)) waiting.set(el.id, el);
    }
  });
  document.body.addEventListener("htmx:afterSettle", function () {
    waiting.forEach(function (el, id) {
      const target = document.getElementById(id);
      if (!target) return;
      waiting.delete(id);
      if (!isOlder(el, target)) {
        target.replaceWith(el);
        htmx.process(el);
      }
    });
  });

  // Back soon after the server is: retries at most 5 s apart (htmx's own
  // delay grows to a minute), spread so a thousand tabs don't come at once.
  htmx.config.wsReconnectDelay = function (retry) {
    const ceiling = Math.min(500 * Math.pow(2, retry), 5000);
    return ceiling / 2 + Math.random() * ceiling / 2;
  };

  // While the socket is down the page says so and dims the unfinished
  // cards: they may be out of date. It clears once the cards are resynced.
  let offline = false;
  let awaited = null;  // job ids whose fresh cards end a resync
  let resyncTimer = null;
  function setOffline(value) {
    offline = value;
    const banner = document.getElementById("connection-state");
    const live = document.getElementById("conversation-live");
    if (banner) banner.hidden = !value;
    if (live) live.classList.toggle("is-stale", value);
    awaited = null;
    clearTimeout(resyncTimer);
  }

  // After any (re)connect, ask for the current state of every card this
  // page still shows as unfinished: some may have finished meanwhile.
  let socket = null;
  function resync(wrapper) {
    const ids = Array.from(
      document.querySelectorAll(".job-card[data-unfinished]")
    ).map(function (card) { return card.dataset.jobId; });
    // Replies the chat model was writing: their text so far and state.
    const replies = Array.from(
      document.querySelectorAll(".message[data-reply][data-unfinished]")
    ).map(function (message) { return message.id.replace("message-", ""); });
    if (replies.length) wrapper.send(JSON.stringify({ replies: replies }));
    if (!ids.length) {
      setOffline(false);
      return;
    }
    if (offline) {
      awaited = ids;
      // Whatever happens to the answer, a working socket is not "offline".
      clearTimeout(resyncTimer);
      resyncTimer = setTimeout(function () { setOffline(false); }, 3000);
    }
    wrapper.send(JSON.stringify({ sync: ids }));
  }
  document.body.addEventListener("htmx:wsOpen", function (event) {
    socket = event.detail.socketWrapper;
    resync(socket);
  });
  document.body.addEventListener("htmx:wsAfterMessage", function (event) {
    const text = String(event.detail.message || "");
    if (awaited && awaited.every(function (id) { return text.indexOf('id="job-' + id + '"') !== -1; })) {
      setOffline(false);
    }
  });
  window.addEventListener("offline", function () { setOffline(true); });
  window.addEventListener("online", function () { if (socket) resync(socket); });

  // A picture that finishes or fails: told to screen readers, counted in
  // the title while the tab is hidden, and (opted in) a desktop
  // notification. Statuses are compared after each pushed message.
  const statuses = new Map();
  let unseen = 0;
  const baseTitle = document.title;
  function rememberStatuses() {
    document.querySelectorAll(".job-card").forEach(function (card) {
      statuses.set(card.dataset.jobId, card.dataset.status);
    });
  }
  function promptOf(card) {
    const prompt = card.querySelector(".job-card__prompt");
    return prompt ? (prompt.getAttribute("title") || prompt.textContent).trim() : "";
  }
  function pictureEnded(card) {
    const announcer = document.getElementById("announcer");
    const template = announcer && announcer.dataset[card.dataset.status];
    const text = template ? template.replace("{prompt}", promptOf(card)) : "";
    if (announcer && text) announcer.textContent = text;
    if (!document.hidden) return;
    unseen += 1;
    document.title = "(" + unseen + ") " + baseTitle;
    if (notifyWanted() && text) {
      const note = new Notification(text, { tag: card.dataset.jobId });
      note.onclick = function () {
        window.focus();
        const shown = document.getElementById("job-" + card.dataset.jobId);
        if (shown) shown.scrollIntoView({ block: "center" });
        note.close();
      };
    }
  }
  document.body.addEventListener("htmx:wsAfterMessage", function () {
    document.querySelectorAll(".job-card").forEach(function (card) {
      const before = statuses.get(card.dataset.jobId);
      const now = card.dataset.status;
      statuses.set(card.dataset.jobId, now);
      if (before && before !== now && (now === "complete" || now === "error") &&
          (before === "queued" || before === "processing")) {
        pictureEnded(card);
      }
    });
  });
  document.body.addEventListener("htmx:afterSettle", rememberStatuses);
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) {
      unseen = 0;
      document.title = baseTitle;
    }
  });

  const NOTIFY_KEY = "mami:notify";
  function notifyWanted() {
    return "Notification" in window && Notification.permission === "granted" &&
      localStorage.getItem(NOTIFY_KEY) === "1";
  }
  function showNotifyState() {
    const toggle = document.getElementById("notify-toggle");
    if (!toggle) return;
    const on = notifyWanted();
    toggle.hidden = !("Notification" in window) || Notification.permission === "denied";
    toggle.textContent = on ? toggle.dataset.on : toggle.dataset.off;
    toggle.setAttribute("aria-pressed", on ? "true" : "false");
  }
  document.addEventListener("click", function (event) {
    if (!event.target.closest || !event.target.closest("#notify-toggle")) return;
    if (notifyWanted()) {
      localStorage.removeItem(NOTIFY_KEY);
      showNotifyState();
      return;
    }
    Notification.requestPermission().then(function (permission) {
      if (permission === "granted") localStorage.setItem(NOTIFY_KEY, "1");
      showNotifyState();
    });
  });
  rememberStatuses();
  showNotifyState();

  // The sidebar is a drawer on narrow screens and always open on wide ones.
  const sidebar = document.querySelector("[data-sidebar]");
  const wide = window.matchMedia("(min-width: 960px)");
  function placeSidebar() { if (sidebar) sidebar.open = wide.matches; }
  wide.addEventListener("change", placeSidebar);
  placeSidebar();

  // "Load older messages" puts them above what the user is reading: keep
  // that where it is, and tell the socket the older cards are shown too.
  let olderFrom = null;
  document.body.addEventListener("htmx:beforeSwap", function (event) {
    if (event.detail.target && event.detail.target.id === "older-messages") {
      const page = document.scrollingElement;
      olderFrom = page.scrollHeight - page.scrollTop;
    }
  });
  document.body.addEventListener("htmx:afterSwap", function () {
    if (olderFrom === null) return;
    const page = document.scrollingElement;
    page.scrollTop = page.scrollHeight - olderFrom;
    olderFrom = null;
    const first = document.querySelector("#messages > .message");
    if (socket && first) socket.send(JSON.stringify({ from: first.id.replace("message-", "") }));
  });

  // The server closes a socket with an application code (4xxx) when it
  // won't take it; htmx doesn't retry those, so say why.
  document.body.addEventListener("htmx:wsClose", function (event) {
    const code = event.detail.event && event.detail.event.code;
    const live = document.getElementById("conversation-live");
    const text = live && live.dataset["close" + code];
    if (text) {
      showNotice(text, true);
    } else {
      setOffline(true);  // htmx reconnects
    }
  });

  // Lightbox: a click opens the picture large; the arrow keys move between
  // the conversation's pictures; Esc or a click outside closes.
  let shownInLightbox = null;
  function showInLightbox(opener) {
    const dialog = document.getElementById("lightbox");
    const image = dialog.querySelector(".lightbox__image");
    image.src = opener.dataset.lightbox;
    const picture = opener.querySelector("img");
    image.alt = picture ? picture.alt : "";
    shownInLightbox = opener;
    if (!dialog.open) dialog.showModal();
  }
  document.addEventListener("click", function (event) {
    const dialog = document.getElementById("lightbox");
    if (!dialog) return;
    const opener = event.target.closest("[data-lightbox]");
    if (opener) {
      showInLightbox(opener);
    } else if (event.target === dialog) {
      dialog.close();
    }
  });
  document.addEventListener("keydown", function (event) {
    const dialog = document.getElementById("lightbox");
    if (!dialog || !dialog.open || (event.key !== "ArrowLeft" && event.key !== "ArrowRight")) return;
    const all = Array.from(document.querySelectorAll("#messages [data-lightbox]"));
    const at = all.indexOf(shownInLightbox);
    const next = all[at + (event.key === "ArrowRight" ? 1 : -1)];
    if (next) {
      event.preventDefault();
      showInLightbox(next);
    }
  });

  // "Copy prompt": the clipboard API where the page is a secure context,
  // else the old way (a selected text field).
  document.addEventListener("click", function (event) {
    const button = event.target.closest && event.target.closest("[data-copy]");
    if (!button) return;
    const text = button.dataset.copy;
    const done = function () { showNotice(button.dataset.copied || "Copied", false); };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done);
      return;
    }
    const field = document.createElement("textarea");
    field.value = text;
    field.setAttribute("readonly", "");
    field.className = "visually-hidden";
    document.body.appendChild(field);
    field.select();
    document.execCommand("copy");
    field.remove();
    done();
  });

  // A 400 answer carries a form error or a notice for the page to show.
  // In DEBUG, django-htmx's helper (listening on document) would replace
  // the whole page with it: keep it from seeing those.
  document.body.addEventListener("htmx:beforeOnLoad", function (event) {
    if (event.detail.xhr && event.detail.xhr.status === 400) event.stopPropagation();
  });

  // After a message is sent, empty the box and its errors (a failed send
  // keeps the text: see sendFailed).
  document.body.addEventListener("htmx:afterRequest", function (event) {
    const form = event.detail.elt;
    const status = event.detail.xhr ? event.detail.xhr.status : 0;
    // 400 counts as "successful" for htmx (its form error is swapped in),
    // but the text must stay in the box with the error beside it.
    if (status < 200 || status >= 300 || !form.matches || !form.matches(".composer")) return;
    // The model picked stays picked for the next picture.
    const picker = form.querySelector("select[name=model]");
    const picked = picker ? picker.value : null;
    form.reset();
    if (picker) picker.value = picked;
    const box = document.getElementById("composer-errors");
    if (box) box.replaceChildren();
  });

  // The language menu applies on change (a button does it without JS).
  document.addEventListener("change", function (event) {
    if (event.target.matches && event.target.matches("[data-submit-on-change]")) {
      event.target.form.submit();
    }
  });

  // Enter sends, Shift+Enter starts a new line.
  document.addEventListener("keydown", function (event) {
    const field = event.target;
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing &&
        field.matches && field.matches(".composer textarea")) {
      event.preventDefault();
      field.form.requestSubmit();
    }
  });

  // When sending fails, say so; the text stays in the box.
  function sendFailed(event) {
    const form = event.detail.elt;
    if (!form || !form.matches || !form.matches(".composer")) return;
    const box = document.getElementById("composer-errors");
    if (!box) return;
    const p = document.createElement("p");
    p.className = "form-error";
    p.textContent = box.dataset.sendFailed || "Your message could not be sent. It is still in the box: try again.";
    box.replaceChildren(p);
  }
  document.body.addEventListener("htmx:sendError", sendFailed);
  document.body.addEventListener("htmx:responseError", sendFailed);
})();

// What the user sent (and its card) comes into view, and the page follows
// the newest while the reader stays at the bottom: a pushed update (a card
// growing into its picture) moves it only then, so someone reading older
// messages is left alone.
(function () {
  let stick = false;
  function nearBottom() {
    const page = document.scrollingElement;
    return page.scrollHeight - page.scrollTop - page.clientHeight < 48;
  }
  function toBottom() {
    const page = document.scrollingElement;
    page.scrollTop = page.scrollHeight;
    stick = true;
  }
  window.addEventListener("scroll", function () { stick = nearBottom(); }, { passive: true });
  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail.target && event.detail.target.id === "messages") toBottom();
  });
  document.body.addEventListener("htmx:wsAfterMessage", function () {
    if (stick) toBottom();
  });
  stick = nearBottom();
})();

// Short notices (HX-Trigger "mami:notice", or the page itself); a lasting
// one stays until the page is reloaded.
function showNotice(message, lasting) {
  const box = document.getElementById("notices");
  if (!box) return;
  const note = document.createElement("p");
  note.className = "notice";
  note.textContent = message;
  box.appendChild(note);
  if (!lasting) setTimeout(function () { note.remove(); }, 6000);
}
document.body.addEventListener("mami:notice", function (event) {
  showNotice(event.detail.message, false);
});
