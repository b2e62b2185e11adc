//! A wire-level ESC/POS receipt printer on TCP, for testing the real driver and for
//! a technician's bench (`outpost-sim printer --listen ADDR`).
//!
//! It parses the command stream with the same decoder rules a printer follows
//! ([`outpost_peripherals::escpos::decode`]), renders what it prints as plain text
//! (one receipt per cut), models the paper roll (length in lines, near end, empty),
//! the cover and the drawer, answers `DLE EOT` 1, 2 and 4, and can be told to
//! misbehave: split its answers into single bytes, stay silent, drop the connection
//! after a number of bytes, or run out of paper after a number of lines.
//!
//! # Model
//! - Every printed line (a line feed, each line of `ESC d n`) uses one line of paper;
//!   a barcode uses [`BARCODE_LINES`], a QR code [`QR_LINES`].
//! - With no paper or the cover open the printer is offline: print data is dropped
//!   (a real printer would hold it; dropping keeps a reprint from printing twice),
//!   the receipt in progress is torn off and counted, and status says why.
//!   Real-time status is answered whatever the state; `ESC p` is always carried out.
//! - `ESC @` resets styles, alignment and code page, and clears the line buffer.
//! - Text is decoded from PC858 when `ESC t 19` is selected, else as ASCII.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use outpost_peripherals::escpos::codepage;
use outpost_peripherals::escpos::decode::{Command, Decoded, MAX_COMMAND_BYTES, decode_one};
use outpost_peripherals::escpos::status::{OfflineByte, PaperByte, PrinterByte};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio::task::JoinSet;

use super::handle::{Handle, Model, Serve, WeakHandle};

/// Paper lines a barcode uses.
pub const BARCODE_LINES: u64 = 4;
/// Paper lines a QR code uses.
pub const QR_LINES: u64 = 8;
/// How many cut receipts the simulator keeps (the oldest go first).
pub const MAX_RECEIPTS: usize = 1000;
/// How many connections it serves at once; more wait to be accepted.
pub const MAX_CONNECTIONS: usize = 8;
/// Longest rendered line kept; the rest of an endless line is dropped.
pub const MAX_LINE_CHARS: usize = 1024;

/// How the simulated printer starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimOptions {
    /// Length of the paper roll, in lines.
    pub paper_lines: u64,
    /// The near-end sensor trips at this many lines left.
    pub near_end_lines: u64,
    /// Characters per line, for rendering alignment (48 for 80 mm paper).
    pub columns: usize,
    /// Send every status answer byte in its own write.
    pub split_replies: bool,
    /// Answer no status request.
    pub silent: bool,
    /// Drop the connection once this many more bytes have arrived.
    pub drop_after_bytes: Option<u64>,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            paper_lines: 10_000,
            near_end_lines: 100,
            columns: 48,
            split_replies: false,
            silent: false,
            drop_after_bytes: None,
        }
    }
}

/// Counters of what the simulator saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimCounters {
    /// Bytes received on every connection.
    pub bytes_received: u64,
    /// Connections accepted.
    pub connections: u64,
    /// `DLE EOT` requests answered (or swallowed when silent).
    pub status_requests: u64,
    /// Cuts carried out.
    pub cuts: u64,
    /// Drawer kick pulses.
    pub kicks: u64,
    /// Receipts torn off incomplete (paper out or cover opened mid-receipt).
    pub torn: u64,
    /// Commands skipped as unknown.
    pub skipped: u64,
    /// Connections dropped by fault injection.
    pub dropped: u64,
}

#[derive(Debug)]
struct Printer {
    opts: SimOptions,
    paper_left: u64,
    cover_open: bool,
    drawer_open: bool,
    // Print modes.
    code_page: u8,
    align: u8,
    double_width: bool,
    barcode_hri: bool,
    qr_data: Vec<u8>,
    // What is being printed.
    line: String,
    line_cols: usize,
    line_align: u8,
    page: Vec<String>,
    receipts: VecDeque<String>,
    counters: SimCounters,
    cut_tx: broadcast::Sender<String>,
}

impl Printer {
    fn new(opts: SimOptions, cut_tx: broadcast::Sender<String>) -> Self {
        Self {
            paper_left: opts.paper_lines,
            opts,
            cover_open: false,
            drawer_open: false,
            code_page: 0,
            align: 0,
            double_width: false,
            barcode_hri: false,
            qr_data: Vec::new(),
            line: String::new(),
            line_cols: 0,
            line_align: 0,
            page: Vec::new(),
            receipts: VecDeque::new(),
            counters: SimCounters::default(),
            cut_tx,
        }
    }

    fn online(&self) -> bool {
        self.paper_left > 0 && !self.cover_open
    }

    fn reset_modes(&mut self) {
        self.code_page = 0;
        self.align = 0;
        self.double_width = false;
        self.barcode_hri = false;
        self.line.clear();
        self.line_cols = 0;
    }

    /// Tear off the receipt in progress: the printer cannot go on with it. What
    /// prints after recovery starts a new receipt.
    fn tear(&mut self) {
        if !self.page.is_empty() || !self.line.is_empty() {
            self.counters.torn += 1;
        }
        self.page.clear();
        self.line.clear();
        self.line_cols = 0;
    }

    /// Put one rendered line on paper, if there is paper.
    fn emit_line(&mut self, text: String) {
        if !self.online() {
            self.tear();
            return;
        }
        self.paper_left -= 1;
        self.page.push(text);
    }

    fn use_lines(&mut self, rendered: String, lines: u64) {
        self.emit_line(rendered);
        for _ in 1..lines {
            if !self.online() {
                self.tear();
                return;
            }
            self.paper_left -= 1;
        }
    }

    fn line_feed(&mut self) {
        let text = std::mem::take(&mut self.line);
        let pad = self.opts.columns.saturating_sub(self.line_cols);
        let pad = match self.line_align {
            1 | b'1' => pad / 2,
            2 | b'2' => pad,
            _ => 0,
        };
        self.line_cols = 0;
        self.emit_line(format!("{}{}", " ".repeat(pad), text).trim_end().to_owned());
    }

    fn text(&mut self, bytes: &[u8]) {
        if !self.online() {
            self.tear();
            return;
        }
        if self.line.is_empty() {
            self.line_align = self.align;
        }
        for &b in bytes {
            if self.line.len() >= MAX_LINE_CHARS {
                break;
            }
            let c = if self.code_page == codepage::ESC_T_PC858 {
                codepage::from_pc858(b).unwrap_or('?')
            } else if b < 0x80 {
                b as char
            } else {
                '?'
            };
            self.line.push(c);
            self.line_cols += if self.double_width { 2 } else { 1 };
        }
    }

    fn cut(&mut self) {
        if !self.line.is_empty() {
            self.line_feed();
        }
        if !self.online() {
            self.tear();
            return;
        }
        self.counters.cuts += 1;
        let mut page = std::mem::take(&mut self.page);
        while page.last().is_some_and(|l| l.is_empty()) {
            page.pop();
        }
        let receipt = page.join("\n");
        if self.receipts.len() == MAX_RECEIPTS {
            self.receipts.pop_front();
        }
        self.receipts.push_back(receipt.clone());
        // Nobody listening is fine.
        let _ = self.cut_tx.send(receipt);
    }

    fn barcode(&mut self, m: u8, data: &[u8]) {
        let name = match m {
            65 => "UPC-A",
            66 => "UPC-E",
            67 => "EAN13",
            68 => "EAN8",
            69 => "CODE39",
            70 => "ITF",
            71 => "CODABAR",
            72 => "CODE93",
            73 => "CODE128",
            _ => "BARCODE",
        };
        let mut shown = String::from_utf8_lossy(data).into_owned();
        if m == 73 {
            // Code 128 data starts with its code set ("{B") and doubles a literal "{".
            shown = shown.get(2..).unwrap_or("").replace("{{", "{");
        }
        if !self.line.is_empty() {
            self.line_feed();
        }
        self.use_lines(format!("[{name} {shown}]"), BARCODE_LINES);
        if self.barcode_hri {
            self.emit_line(shown);
        }
    }

    fn symbol(&mut self, cn: u8, fn_: u8, params: &[u8]) {
        if cn != 49 {
            self.counters.skipped += 1;
            return;
        }
        match fn_ {
            // Store: m = 48, then the data.
            80 => self.qr_data = params.get(1..).unwrap_or(&[]).to_vec(),
            81 => {
                if !self.line.is_empty() {
                    self.line_feed();
                }
                let shown = format!("[QR {}]", String::from_utf8_lossy(&self.qr_data));
                self.use_lines(shown, QR_LINES);
            }
            // Model, module size, error correction: no effect on the rendering.
            _ => {}
        }
    }

    fn status_byte(&self, n: u8) -> Option<u8> {
        match n {
            1 => Some(
                PrinterByte {
                    drawer_pin3_high: self.drawer_open,
                    offline: !self.online(),
                }
                .to_byte(),
            ),
            2 => Some(
                OfflineByte {
                    cover_open: self.cover_open,
                    feed_button: false,
                    paper_end_stop: self.paper_left == 0,
                    error: false,
                }
                .to_byte(),
            ),
            4 => Some(
                PaperByte {
                    near_end: self.paper_left <= self.opts.near_end_lines,
                    end: self.paper_left == 0,
                }
                .to_byte(),
            ),
            // n = 3 (error cause): no errors are modelled, all clear.
            3 => Some(0x12),
            _ => None,
        }
    }

    /// Carry out one command; status answers go to `replies`.
    fn apply(&mut self, cmd: Command<'_>, replies: &mut Vec<u8>) {
        match cmd {
            Command::Text(t) => self.text(t),
            Command::LineFeed => {
                if self.online() {
                    self.line_feed();
                } else {
                    self.tear();
                }
            }
            Command::CarriageReturn => {}
            Command::Init => self.reset_modes(),
            Command::PrintMode(n) => self.double_width = n & 0x20 != 0,
            Command::Emphasis(_) | Command::Underline(_) | Command::Reverse(_) => {}
            Command::Align(n) => self.align = n,
            Command::CodePage(n) => self.code_page = n,
            Command::FeedLines(n) => {
                if !self.line.is_empty() {
                    self.line_feed();
                }
                for _ in 0..n {
                    self.emit_line(String::new());
                }
            }
            Command::FeedDots(_) => {}
            Command::DrawerKick { .. } => {
                self.counters.kicks += 1;
                self.drawer_open = true;
            }
            Command::Cut { .. } => self.cut(),
            Command::BarcodeHeight(_) | Command::BarcodeWidth(_) => {}
            Command::HriPosition(n) => self.barcode_hri = matches!(n, 1..=3 | 49..=51),
            Command::Barcode { m, data } => self.barcode(m, data),
            Command::Symbol { cn, fn_, params } => self.symbol(cn, fn_, params),
            Command::StatusRequest(n) => {
                self.counters.status_requests += 1;
                if !self.opts.silent
                    && let Some(b) = self.status_byte(n)
                {
                    replies.push(b);
                }
            }
            Command::RealTime(_) => {}
            Command::Skipped(_) => self.counters.skipped += 1,
            // Commands added to the decoder later are skipped like unknown ones.
            _ => self.counters.skipped += 1,
        }
    }
}

/// The simulated printer behind a [`SimHandle`]: paper, cover, drawer, print modes,
/// the receipts cut so far.
pub struct PrinterModel {
    printer: Mutex<Printer>,
    cut_tx: broadcast::Sender<String>,
}

impl Model for PrinterModel {
    type Addr = SocketAddr;
    const NAME: &'static str = "SimHandle";
}

impl Serve for PrinterModel {
    const PIPE_CAPACITY: usize = 4096;

    fn serve<S>(sim: WeakHandle<Self>, stream: S) -> impl Future<Output = ()> + Send + 'static
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        serve_stream(sim, stream)
    }
}

/// A running printer simulator. Clones share it; it stops when the last clone is
/// dropped or [`shutdown`](Handle::shutdown) is called, which stops accepting and,
/// with the accept task's `JoinSet`, closes every connection.
/// [`attach`](Handle::attach) serves one more byte stream as this printer, e.g. the
/// master side of a pseudo-terminal to test the serial transport; such a link ends
/// when the stream closes or, after the handle is gone, at its next read, and is not
/// counted against [`MAX_CONNECTIONS`].
pub type SimHandle = Handle<PrinterModel>;

/// The ESC/POS printer simulator.
#[derive(Debug)]
pub struct EscPosSim;

impl EscPosSim {
    /// Bind `addr` (use `127.0.0.1:0` in tests) and serve until shut down.
    pub async fn start(addr: SocketAddr, options: SimOptions) -> std::io::Result<SimHandle> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Self::serve(listener, options))
    }

    /// Serve on a bound listener.
    pub fn serve(listener: TcpListener, options: SimOptions) -> SimHandle {
        let addr = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (cut_tx, _) = broadcast::channel(64);
        let model = PrinterModel {
            printer: Mutex::new(Printer::new(options, cut_tx.clone())),
            cut_tx,
        };
        Handle::spawn(model, addr, |weak| {
            tokio::spawn(async move {
                let mut conns = JoinSet::new();
                loop {
                    // Reap finished connections; wait for one when at the limit.
                    while conns.try_join_next().is_some() {}
                    if conns.len() >= MAX_CONNECTIONS {
                        conns.join_next().await;
                        continue;
                    }
                    let Ok((stream, _)) = listener.accept().await else {
                        // Out of descriptors or similar: back off instead of spinning.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    let Some(sim) = weak.upgrade() else { return };
                    conns.spawn(connection(sim.downgrade(), stream));
                }
            })
        })
    }
}

/// Serve one TCP connection.
async fn connection(sim: WeakHandle<PrinterModel>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    serve_stream(sim, stream).await;
}

/// Serve one byte stream. Holds only a weak reference to the printer, so dropping
/// the handle ends it at its next read.
async fn serve_stream<S>(sim: WeakHandle<PrinterModel>, mut stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if let Some(sim) = sim.upgrade() {
        sim.p().counters.connections += 1;
    }
    let mut pending: Vec<u8> = Vec::new();
    let mut need = 1usize;
    let mut buf = vec![0u8; 4096];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let Some(live) = sim.upgrade() else { return };
        let (replies, split, drop_now) = {
            let mut p = live.p();
            // Fault injection: only the bytes before the drop point arrive.
            let (take, drop_now) = match p.opts.drop_after_bytes {
                Some(left) if left <= n as u64 => {
                    p.opts.drop_after_bytes = None;
                    p.counters.dropped += 1;
                    (left as usize, true)
                }
                Some(left) => {
                    p.opts.drop_after_bytes = Some(left - n as u64);
                    (n, false)
                }
                None => (n, false),
            };
            p.counters.bytes_received += take as u64;
            pending.extend_from_slice(&buf[..take]);
            let mut replies = Vec::new();
            if pending.len() >= need {
                let mut at = 0;
                loop {
                    match decode_one(&pending[at..]) {
                        Decoded::Command(cmd, used) => {
                            p.apply(cmd, &mut replies);
                            at += used;
                        }
                        Decoded::Incomplete { need: more } => {
                            need = more;
                            break;
                        }
                    }
                }
                pending.drain(..at);
            }
            if drop_now {
                // The job stops here, as if the cable were pulled.
                p.tear();
            }
            (replies, p.opts.split_replies, drop_now)
        };
        drop(live);
        if drop_now {
            return;
        }
        // `decode_one` never asks for more than MAX_COMMAND_BYTES, so `pending` stays
        // bounded; this is a second guard against a decoder bug.
        if pending.len() > MAX_COMMAND_BYTES + buf.len() {
            return;
        }
        if replies.is_empty() {
            continue;
        }
        let written = if split {
            let mut ok = true;
            for b in &replies {
                if stream.write_all(&[*b]).await.is_err() || stream.flush().await.is_err() {
                    ok = false;
                    break;
                }
                // Let each byte leave in its own segment.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            ok
        } else {
            stream.write_all(&replies).await.is_ok()
        };
        if !written {
            return;
        }
    }
}

impl SimHandle {
    fn p(&self) -> MutexGuard<'_, Printer> {
        // Held only while applying one read's commands, never across an await; a
        // panic while held leaves a printer state that is still usable.
        self.model()
            .printer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The receipt cut last, as text.
    pub fn last_receipt(&self) -> Option<String> {
        self.p().receipts.back().cloned()
    }

    /// Every receipt kept, oldest first.
    pub fn receipts(&self) -> Vec<String> {
        self.p().receipts.iter().cloned().collect()
    }

    /// Receipts as they are cut (a slow receiver loses the oldest).
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.model().cut_tx.subscribe()
    }

    /// What it has counted.
    pub fn counters(&self) -> SimCounters {
        self.p().counters
    }

    /// Lines of paper left.
    pub fn paper_left(&self) -> u64 {
        self.p().paper_left
    }

    /// Put in a new roll of `lines` lines.
    pub fn load_paper(&self, lines: u64) {
        self.p().paper_left = lines;
    }

    /// Run out of paper after `lines` more lines.
    pub fn paper_out_after(&self, lines: u64) {
        self.p().paper_left = lines;
    }

    /// Open or close the cover.
    pub fn set_cover_open(&self, open: bool) {
        self.p().cover_open = open;
    }

    /// Whether the drawer is open.
    pub fn drawer_open(&self) -> bool {
        self.p().drawer_open
    }

    /// Push the drawer shut.
    pub fn close_drawer(&self) {
        self.p().drawer_open = false;
    }

    /// Send each status answer byte in its own write.
    pub fn set_split_replies(&self, split: bool) {
        self.p().opts.split_replies = split;
    }

    /// Stop (or resume) answering status requests.
    pub fn set_silent(&self, silent: bool) {
        self.p().opts.silent = silent;
    }

    /// Drop the connection once `bytes` more bytes have arrived.
    pub fn drop_after_bytes(&self, bytes: u64) {
        self.p().opts.drop_after_bytes = Some(bytes);
    }
}

/// `outpost-sim printer`: an ESC/POS printer on the network.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9100")]
    pub listen: SocketAddr,
    /// Length of the paper roll, in lines.
    #[arg(long, default_value_t = 10_000)]
    pub paper_lines: u64,
    /// Lines left when the near-end sensor trips.
    #[arg(long, default_value_t = 100)]
    pub near_end_lines: u64,
    /// Characters per line (48 for 80 mm paper, 32 for 58 mm).
    #[arg(long, default_value_t = 48)]
    pub columns: usize,
    /// Send status answers one byte at a time.
    #[arg(long)]
    pub split_replies: bool,
    /// Never answer status requests.
    #[arg(long)]
    pub silent: bool,
}

impl Args {
    /// The simulator options these arguments ask for.
    pub fn options(&self) -> SimOptions {
        SimOptions {
            paper_lines: self.paper_lines,
            near_end_lines: self.near_end_lines,
            columns: self.columns,
            split_replies: self.split_replies,
            silent: self.silent,
            drop_after_bytes: None,
        }
    }
}

/// Run the simulator until Ctrl-C, printing every receipt to standard output as it
/// is cut.
pub async fn run(args: Args) -> std::io::Result<()> {
    let sim = EscPosSim::start(args.listen, args.options()).await?;
    println!(
        "ESC/POS printer simulator listening on {}",
        sim.local_addr()
    );
    let mut cuts = sim.subscribe();
    loop {
        tokio::select! {
            r = tokio::signal::ctrl_c() => {
                sim.shutdown();
                return r;
            }
            receipt = cuts.recv() => match receipt {
                Ok(text) => println!("----- receipt -----\n{text}\n-------------------"),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    println!("({n} receipts not shown)");
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_peripherals::escpos::decode::decode_all;

    fn printer(opts: SimOptions) -> Printer {
        Printer::new(opts, broadcast::channel(4).0)
    }

    fn feed(p: &mut Printer, bytes: &[u8]) -> Vec<u8> {
        let mut replies = Vec::new();
        for c in decode_all(bytes).unwrap() {
            p.apply(c, &mut replies);
        }
        replies
    }

    #[test]
    fn renders_aligned_text_in_pc858_and_one_receipt_per_cut() {
        let mut p = printer(SimOptions {
            columns: 10,
            ..SimOptions::default()
        });
        feed(
            &mut p,
            b"\x1b@\x1bt\x13\x1ba\x01Hi\n\x1ba\x02\xd5 1\n\x1dV\x00",
        );
        assert_eq!(p.receipts.back().unwrap(), "    Hi\n       \u{20ac} 1");
        assert_eq!(p.counters.cuts, 1);
        assert_eq!(p.paper_left, 10_000 - 2);
    }

    #[test]
    fn paper_runs_out_mid_receipt_and_the_receipt_is_torn() {
        let mut p = printer(SimOptions::default());
        p.paper_left = 2;
        let r = feed(
            &mut p,
            b"a\nb\nc\n\x1dV\x01\x10\x04\x01\x10\x04\x02\x10\x04\x04",
        );
        assert!(p.receipts.is_empty());
        assert_eq!(p.counters.torn, 1);
        assert_eq!(r, vec![0x1A, 0x32, 0x7E]);
    }

    #[test]
    fn a_kick_opens_the_drawer_and_status_says_so() {
        let mut p = printer(SimOptions::default());
        let r = feed(&mut p, b"\x1bp\x00\x19\xfa\x10\x04\x01");
        assert_eq!(r, vec![0x16]);
        assert!(p.drawer_open);
        assert_eq!(p.counters.kicks, 1);
    }

    #[test]
    fn the_cli_arguments_parse() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: Args,
        }
        let cli = Cli::parse_from(["outpost-sim", "--listen", "0.0.0.0:9200", "--split-replies"]);
        let opts = cli.args.options();
        assert_eq!(cli.args.listen, "0.0.0.0:9200".parse().unwrap());
        assert!(opts.split_replies && !opts.silent);
        assert_eq!(opts.columns, 48);
        assert!(Cli::try_parse_from(["outpost-sim", "--listen", "nowhere"]).is_err());
    }

    #[test]
    fn endless_lines_are_bounded() {
        let mut p = printer(SimOptions::default());
        feed(&mut p, &vec![b'x'; 5 * MAX_LINE_CHARS]);
        assert_eq!(p.line.len(), MAX_LINE_CHARS);
    }
}
