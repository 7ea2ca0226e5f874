//! Output in a notebook while a cell runs: [`display`] shows a value at once (as many per cell
//! as the code makes, in order), [`display_live`] shows one and returns a [`Live`] handle whose
//! [`Live::update`] replaces that output in place (Jupyter's `display_id` with
//! `update_display_data`).
//!
//! evcxr 0.22 itself sends rich output once, when the cell ends, the last of each MIME type, and
//! has no display ids. fastdet's kernel launcher (`scripts/kernel.py`) stands between Jupyter and
//! evcxr and sets `FASTDET_DISPLAY=stdout-v1`: then each output is one printed line, marked with
//! [`MARK`] and holding JSON (`{"id", "update", "data": {mime: body}}`), which evcxr sends on at
//! once and the launcher turns into a `display_data` or `update_display_data` message of the
//! running cell. Where that channel is absent the same calls fall back ([`Channel`]): with plain
//! evcxr, evcxr's own protocol (the last output of each kind shows when the cell ends); outside
//! evcxr (a terminal, `cargo test`), the text of the output on stdout.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The environment variable the kernel launcher sets, and the value it sets it to.
pub const ENV: &str = "FASTDET_DISPLAY";
pub const ENV_VALUE: &str = "stdout-v1";
/// The start of a printed line that the launcher turns into a display message.
pub const MARK: &str = "FASTDET_DISPLAY_V1 ";
/// Updates of one [`Live`] output go out at most this often; the last one always goes out.
pub const THROTTLE: Duration = Duration::from_millis(500);

/// One output: the same content in one or more MIME types (Jupyter's MIME bundle), bodies as
/// Jupyter wants them (images base64-encoded).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Output {
    pub data: Vec<(String, String)>,
}

impl Output {
    pub fn html(html: impl Into<String>) -> Self {
        Output::default().with("text/html", html)
    }

    pub fn text(text: impl Into<String>) -> Self {
        Output::default().with("text/plain", text)
    }

    pub fn png(png: &[u8]) -> Self {
        use base64::Engine;
        Output::default().with("image/png", base64::engine::general_purpose::STANDARD.encode(png))
    }

    /// This output with `body` as `mime` too (say a `text/plain` version of an HTML table).
    pub fn with(mut self, mime: &str, body: impl Into<String>) -> Self {
        self.data.retain(|(m, _)| m != mime);
        self.data.push((mime.to_string(), body.into()));
        self
    }

    pub fn get(&self, mime: &str) -> Option<&str> {
        self.data.iter().find(|(m, _)| m == mime).map(|(_, b)| b.as_str())
    }
}

/// What can be shown in a notebook as one output.
pub trait Show {
    fn output(&self) -> Output;
}

impl Show for Output {
    fn output(&self) -> Output {
        self.clone()
    }
}

impl Show for str {
    fn output(&self) -> Output {
        Output::text(self)
    }
}

impl Show for String {
    fn output(&self) -> Output {
        Output::text(self.as_str())
    }
}

impl<T: Show + ?Sized> Show for &T {
    fn output(&self) -> Output {
        (**self).output()
    }
}

/// Where outputs go in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// fastdet's kernel launcher: outputs show at once and update in place.
    Live,
    /// evcxr without the launcher: the last output of each MIME type shows when the cell ends.
    Evcxr,
    /// Neither (a terminal, `cargo test`): the output's text on stdout.
    Terminal,
}

/// [`set_channel`]'s choice: 0 none, else 1 + the channel's index.
static CHOSEN: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Sends this process's outputs to `channel` from now on (`None`: back to the one the
/// environment gives). `set_channel(Some(Channel::Evcxr))` in a cell of the "Rust (fastdet)"
/// kernel turns the live outputs off: printed progress lines, the report when the cell ends.
pub fn set_channel(channel: Option<Channel>) {
    let v = match channel {
        None => 0,
        Some(Channel::Live) => 1,
        Some(Channel::Evcxr) => 2,
        Some(Channel::Terminal) => 3,
    };
    CHOSEN.store(v, Ordering::Relaxed);
}

/// The channel of this process: [`set_channel`]'s choice, else read from the environment (each
/// time: cheap).
pub fn channel() -> Channel {
    match CHOSEN.load(Ordering::Relaxed) {
        1 => return Channel::Live,
        2 => return Channel::Evcxr,
        3 => return Channel::Terminal,
        _ => {}
    }
    if std::env::var(ENV).is_ok_and(|v| v == ENV_VALUE) {
        Channel::Live
    } else if std::env::var_os("EVCXR_IS_RUNTIME").is_some() {
        Channel::Evcxr
    } else {
        Channel::Terminal
    }
}

/// Whether outputs update in place here (fastdet's kernel launcher).
pub fn is_live() -> bool {
    channel() == Channel::Live
}

/// The line the launcher turns into a display message.
pub fn marked_line(id: &str, update: bool, out: &Output) -> String {
    let data: serde_json::Map<String, serde_json::Value> =
        out.data.iter().map(|(m, b)| (m.clone(), serde_json::Value::String(b.clone()))).collect();
    let msg = serde_json::json!({ "id": id, "update": update, "data": data });
    format!("{MARK}{msg}")
}

/// Where a [`Live`] output's messages go: this process's channel, or (in tests) a list.
#[derive(Clone)]
enum Sink {
    Std(Channel),
    #[cfg(test)]
    Capture(Arc<Mutex<Vec<(Instant, bool, Output)>>>),
}

impl Sink {
    fn send(&self, id: &str, update: bool, out: &Output) {
        match self {
            Sink::Std(channel) => emit(*channel, id, update, out),
            #[cfg(test)]
            Sink::Capture(v) => v.lock().unwrap().push((Instant::now(), update, out.clone())),
        }
    }

    fn throttled(&self) -> bool {
        match self {
            Sink::Std(channel) => *channel == Channel::Live,
            #[cfg(test)]
            Sink::Capture(_) => true,
        }
    }
}

fn emit(channel: Channel, id: &str, update: bool, out: &Output) {
    let mut stdout = std::io::stdout().lock();
    // A failed write to stdout has nowhere to be reported; the output is lost, nothing else.
    let _ = match channel {
        Channel::Live => writeln!(stdout, "{}", marked_line(id, update, out)),
        Channel::Evcxr => {
            out.data.iter().try_for_each(|(m, b)| writeln!(stdout, "EVCXR_BEGIN_CONTENT {m}\n{b}\nEVCXR_END_CONTENT"))
        }
        Channel::Terminal if !update => match out.get("text/plain") {
            Some(t) => writeln!(stdout, "{t}"),
            None => Ok(()),
        },
        Channel::Terminal => Ok(()),
    };
    let _ = stdout.flush();
}

/// A display id unique to this process and run (a kernel restart or a new runtime process after
/// an interrupt starts new ones).
fn new_id() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    static START: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    let start = START.get_or_init(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
    });
    format!("fastdet-{}-{start:x}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Show `x` now, as a new output of the running cell (see the module docs for the fallbacks).
pub fn display(x: &(impl Show + ?Sized)) {
    emit(channel(), &new_id(), false, &x.output());
}

/// Show `x` now and return a handle that replaces it in place ([`Live::update`]).
pub fn display_live(x: &(impl Show + ?Sized)) -> Live {
    Live::start(Sink::Std(channel()), &x.output())
}

/// One output that updates in place ([`display_live`]). Updates closer than [`THROTTLE`] to the
/// one before wait, and only the newest of them goes out (from a timer thread, so the last
/// update always shows even when nothing follows it). Dropping the handle sends what waits.
pub struct Live {
    id: String,
    sink: Sink,
    state: Arc<Mutex<LiveState>>,
}

#[derive(Default)]
struct LiveState {
    last: Option<Instant>,
    pending: Option<Output>,
    timer: bool,
    sent: usize,
}

impl Live {
    fn start(sink: Sink, first: &Output) -> Self {
        let live = Live { id: new_id(), sink, state: Arc::default() };
        live.sink.send(&live.id, false, first);
        live.state.lock().unwrap_or_else(|e| e.into_inner()).last = Some(Instant::now());
        live
    }

    /// Jupyter's `display_id` of this output.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// How many updates went out so far.
    pub fn updates_sent(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).sent
    }

    /// Replace the output by `x` (now, or within [`THROTTLE`] if one went out just before).
    /// Outside fastdet's kernel launcher: with plain evcxr the newest shows when the cell ends;
    /// in a terminal, nothing.
    pub fn update(&self, x: &(impl Show + ?Sized)) {
        if !self.sink.throttled() {
            self.sink.send(&self.id, true, &x.output());
            return;
        }
        let out = x.output();
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let wait = st.last.map(|t| THROTTLE.saturating_sub(t.elapsed())).unwrap_or_default();
        if wait.is_zero() && !st.timer {
            self.sink.send(&self.id, true, &out);
            st.last = Some(Instant::now());
            st.sent += 1;
            st.pending = None;
            return;
        }
        st.pending = Some(out);
        if !st.timer {
            st.timer = true;
            let (state, id, sink) = (self.state.clone(), self.id.clone(), self.sink.clone());
            std::thread::spawn(move || {
                std::thread::sleep(wait);
                let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(out) = st.pending.take() {
                    sink.send(&id, true, &out);
                    st.last = Some(Instant::now());
                    st.sent += 1;
                }
                st.timer = false;
            });
        }
    }

    /// Send the update that waits for its turn, if any, now.
    pub fn flush(&self) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(out) = st.pending.take() {
            self.sink.send(&self.id, true, &out);
            st.last = Some(Instant::now());
            st.sent += 1;
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chosen_channel_wins_over_the_environment_until_it_is_cleared() {
        let from_env = channel();
        for c in [Channel::Live, Channel::Evcxr, Channel::Terminal] {
            set_channel(Some(c));
            assert_eq!(channel(), c);
        }
        set_channel(None);
        assert_eq!(channel(), from_env);
    }

    #[test]
    fn a_marked_line_is_one_line_of_json_the_launcher_reads() {
        let out = Output::html("<b>a\nb</b>").with("text/plain", "a \"b\"");
        let line = marked_line("fastdet-1", true, &out);
        assert!(line.starts_with(MARK) && !line.contains('\n'), "{line}");
        let v: serde_json::Value = serde_json::from_str(&line[MARK.len()..]).unwrap();
        assert_eq!(v["id"], "fastdet-1");
        assert_eq!(v["update"], true);
        assert_eq!(v["data"]["text/html"], "<b>a\nb</b>");
        assert_eq!(v["data"]["text/plain"], "a \"b\"");
    }

    #[test]
    fn updates_are_throttled_and_the_last_one_always_goes_out() {
        let got = Arc::new(Mutex::new(vec![]));
        let live = Live::start(Sink::Capture(got.clone()), &Output::text("0"));
        let t0 = Instant::now();
        // 60 updates in 0.6 s: about 2 go out then, the newest after the window.
        for i in 1..=60 {
            live.update(&Output::text(i.to_string()));
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(THROTTLE + Duration::from_millis(200));
        let got = got.lock().unwrap().clone();
        let texts: Vec<&str> = got.iter().map(|(_, _, o)| o.get("text/plain").unwrap()).collect();
        assert_eq!(texts[0], "0");
        assert!(!got[0].1 && got[1..].iter().all(|g| g.1), "the first is a display, the rest updates");
        assert_eq!(*texts.last().unwrap(), "60", "the last update went out: {texts:?}");
        assert!(got.len() <= 4, "{} messages for 60 updates in {:?}: {texts:?}", got.len(), t0.elapsed());
        for w in got.windows(2) {
            assert!(w[1].0 - w[0].0 >= THROTTLE - Duration::from_millis(5), "two updates closer than the throttle");
        }
    }

    #[test]
    fn flush_sends_what_waits() {
        let got = Arc::new(Mutex::new(vec![]));
        let live = Live::start(Sink::Capture(got.clone()), &Output::text("0"));
        live.update(&Output::text("1"));
        assert_eq!(got.lock().unwrap().len(), 1, "within the window the update waits");
        live.flush();
        assert_eq!(got.lock().unwrap().last().unwrap().2.get("text/plain"), Some("1"));
        drop(live);
        assert_eq!(got.lock().unwrap().len(), 2);
    }

    #[test]
    fn ids_differ() {
        assert_ne!(new_id(), new_id());
    }

    #[test]
    fn with_replaces_a_mime_type() {
        let out = Output::text("a").with("text/plain", "b");
        assert_eq!(out.data.len(), 1);
        assert_eq!(out.get("text/plain"), Some("b"));
    }
}
