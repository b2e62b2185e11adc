//! [`Handle`]: what a test gets back when it starts a wire-level simulator, the same
//! for every simulator.
//!
//! A handle shares one running simulator: its model (the simulated device's state,
//! which every link it serves reads and changes), where it listens, and the task that
//! serves its listener. Clones share it; when the last clone is dropped the listener
//! task is aborted, and every link task, which holds only a [`WeakHandle`], ends at its
//! next read. Each simulator names its handle (`ScaleSim` is `Handle<ScaleModel>`)
//! and adds its own controls to it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use outpost_peripherals::transport::DuplexConnector;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The simulated device behind a [`Handle`].
pub trait Model: Sized + Send + Sync + 'static {
    /// Where the simulator listens: `SocketAddr` for one that always listens on TCP,
    /// `Option<SocketAddr>` for one that may serve in-memory links only.
    type Addr: Copy + std::fmt::Debug + Send + Sync;
    /// The simulator's name, for `Debug`.
    const NAME: &'static str;
}

/// A simulator whose every link is served by a task of its own, whatever carries the
/// bytes (TCP, an in-memory pipe, a pseudo-terminal): [`Handle::attach`] and
/// [`Handle::connector`] plug links in.
pub trait Serve: Model {
    /// Bytes each in-memory pipe buffers each way.
    const PIPE_CAPACITY: usize;

    /// Serve one link until it closes or the simulator is gone.
    fn serve<S>(sim: WeakHandle<Self>, stream: S) -> impl Future<Output = ()> + Send + 'static
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static;
}

struct Running<M: Model> {
    model: M,
    addr: M::Addr,
    /// Serves the listener; aborted when the last handle goes.
    task: Option<JoinHandle<()>>,
}

impl<M: Model> Drop for Running<M> {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// A running simulator. Clones share it; it stops when the last clone is dropped or
/// [`shutdown`](Self::shutdown) is called.
pub struct Handle<M: Model> {
    inner: Arc<Running<M>>,
}

impl<M: Model> Clone for Handle<M> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<M: Model> std::fmt::Debug for Handle<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(M::NAME)
            .field("addr", &self.inner.addr)
            .finish_non_exhaustive()
    }
}

/// A reference to a simulator that does not keep it running: what its tasks hold.
pub struct WeakHandle<M: Model> {
    inner: Weak<Running<M>>,
}

impl<M: Model> Clone for WeakHandle<M> {
    fn clone(&self) -> Self {
        Self {
            inner: Weak::clone(&self.inner),
        }
    }
}

impl<M: Model> WeakHandle<M> {
    /// The simulator, unless every handle is gone.
    pub fn upgrade(&self) -> Option<Handle<M>> {
        self.inner.upgrade().map(|inner| Handle { inner })
    }
}

impl<M: Model> Handle<M> {
    /// A simulator served by the task `start` spawns (usually an accept loop on the
    /// listener at `addr`), which gets a weak handle to it.
    pub(crate) fn spawn(
        model: M,
        addr: M::Addr,
        start: impl FnOnce(WeakHandle<M>) -> JoinHandle<()>,
    ) -> Self {
        let inner = Arc::new_cyclic(|weak: &Weak<Running<M>>| Running {
            model,
            addr,
            task: Some(start(WeakHandle {
                inner: weak.clone(),
            })),
        });
        Self { inner }
    }

    /// The simulated device.
    pub(crate) fn model(&self) -> &M {
        &self.inner.model
    }

    /// Where it listens.
    pub fn local_addr(&self) -> M::Addr {
        self.inner.addr
    }

    /// A reference that does not keep the simulator running.
    pub fn downgrade(&self) -> WeakHandle<M> {
        WeakHandle {
            inner: Arc::downgrade(&self.inner),
        }
    }

    /// Stop serving the listener. A simulator whose listener task owns its
    /// connections (the printer, the payment terminal) closes them too; links of the
    /// others end when the last handle is dropped.
    pub fn shutdown(&self) {
        if let Some(t) = &self.inner.task {
            t.abort();
        }
    }
}

impl<M: Model<Addr = Option<SocketAddr>>> Handle<M> {
    /// A simulator with no listener: links come through [`attach`](Self::attach) or
    /// [`connector`](Self::connector).
    pub(crate) fn detached(model: M) -> Self {
        Self {
            inner: Arc::new(Running {
                model,
                addr: None,
                task: None,
            }),
        }
    }
}

impl<M: Serve> Handle<M> {
    /// Serve one link (a TCP stream, a duplex pipe end, a pseudo-terminal).
    pub fn attach<S>(&self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        tokio::spawn(M::serve(self.downgrade(), stream));
    }

    /// An in-memory connector whose every connect is a new link to this simulator;
    /// refused once the simulator is gone.
    pub fn connector(&self, name: &str) -> DuplexConnector {
        let weak = self.downgrade();
        DuplexConnector::new(
            name,
            M::PIPE_CAPACITY,
            Arc::new(move |far| match weak.upgrade() {
                Some(sim) => {
                    sim.attach(far);
                    Ok(())
                }
                None => Err(std::io::ErrorKind::ConnectionRefused.into()),
            }),
        )
    }
}

impl<M: Serve<Addr = Option<SocketAddr>>> Handle<M> {
    /// Bind `addr` (use `127.0.0.1:0` in tests) and serve every connection as a link.
    pub(crate) async fn listen(addr: SocketAddr, model: M) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        Ok(Self::spawn(model, Some(addr), |weak| {
            tokio::spawn(accept_links(listener, weak))
        }))
    }
}

/// Accept every connection on `listener` and serve it as a link, for as long as the
/// simulator lives.
async fn accept_links<M: Serve>(listener: TcpListener, weak: WeakHandle<M>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of descriptors or similar: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let Some(sim) = weak.upgrade() else { return };
        sim.attach(stream);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_peripherals::transport::Connector;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Echoes every link's bytes back and counts its links.
    struct Echo {
        links: std::sync::atomic::AtomicUsize,
    }

    impl Model for Echo {
        type Addr = Option<SocketAddr>;
        const NAME: &'static str = "Echo";
    }

    impl Serve for Echo {
        const PIPE_CAPACITY: usize = 64;

        async fn serve<S>(sim: WeakHandle<Self>, mut stream: S)
        where
            S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        {
            if let Some(sim) = sim.upgrade() {
                sim.model()
                    .links
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            let mut buf = [0u8; 64];
            while let Ok(n @ 1..) = stream.read(&mut buf).await {
                if sim.upgrade().is_none() || stream.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }

    fn echo() -> Echo {
        Echo {
            links: Default::default(),
        }
    }

    async fn round_trip(stream: &mut (impl AsyncRead + AsyncWrite + Unpin)) -> Vec<u8> {
        stream.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        stream.read_exact(&mut got).await.unwrap();
        got.to_vec()
    }

    #[tokio::test]
    async fn a_listening_simulator_serves_tcp_and_stops_with_its_last_handle() {
        let sim = Handle::listen("127.0.0.1:0".parse().unwrap(), echo())
            .await
            .unwrap();
        let addr = sim.local_addr().expect("listening");
        assert_eq!(
            format!("{sim:?}"),
            format!("Echo {{ addr: Some({addr}), .. }}")
        );
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert_eq!(round_trip(&mut s).await, b"ping");
        let weak = sim.downgrade();
        let twin = sim.clone();
        drop(sim);
        assert!(weak.upgrade().is_some(), "a clone keeps it running");
        drop(twin);
        assert!(weak.upgrade().is_none());
        // The link ends at its next read, and the listener is gone.
        s.write_all(b"x").await.unwrap();
        let mut buf = [0u8; 1];
        assert!(matches!(s.read(&mut buf).await, Ok(0) | Err(_)));
        tokio::task::yield_now().await;
        let refused = tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                if tokio::net::TcpStream::connect(addr).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        assert!(refused.await.is_ok(), "the listener was closed");
    }

    #[tokio::test]
    async fn links_come_in_by_hand_or_through_the_connector_until_it_is_gone() {
        let sim = Handle::detached(echo());
        assert_eq!(sim.local_addr(), None);
        let (mut ours, theirs) = tokio::io::duplex(64);
        sim.attach(theirs);
        assert_eq!(round_trip(&mut ours).await, b"ping");
        let connector = sim.connector("echo");
        assert_eq!(connector.describe(), "memory://echo");
        let mut piped = connector.connect().await.unwrap();
        assert_eq!(round_trip(&mut piped).await, b"ping");
        assert_eq!(
            sim.model().links.load(std::sync::atomic::Ordering::SeqCst),
            2
        );
        drop(sim);
        assert!(connector.connect().await.is_err(), "refused once gone");
    }

    #[tokio::test]
    async fn shutdown_stops_the_listener_while_handles_remain() {
        let sim = Handle::listen("127.0.0.1:0".parse().unwrap(), echo())
            .await
            .unwrap();
        let addr = sim.local_addr().expect("listening");
        sim.shutdown();
        let refused = tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                if tokio::net::TcpStream::connect(addr).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        assert!(refused.await.is_ok(), "the listener was closed");
    }
}
