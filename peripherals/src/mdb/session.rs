//! The payment flows over the bridge: `authorize` (wait for a card, VEND REQUEST,
//! wait for the answer), `settle` (VEND SUCCESS or VEND FAILURE, then SESSION
//! COMPLETE) and `status`, which resolves a vend whose answer was lost.

use tokio::time::Instant;

use super::bridge::{Answer, LinkError, Shared, lock};
use super::journal::{Entry, State, approval, status_of};
use super::protocol::{Command, NO_ITEM};
use crate::payment::{KeyStatus, Outcome, PaymentError, PaymentKey, PaymentRequest};

impl Shared {
    /// End the reader's session (SESSION COMPLETE, then poll for END SESSION).
    /// The outcome is already known, so failures here are only logged.
    pub(super) async fn end_session(&self) {
        if let Err(e) = self.exchange(Command::SessionComplete).await {
            tracing::warn!(device = %self.core.id(), error = %e, "MDB session complete failed.");
            return;
        }
        for _ in 0..5 {
            if lock(&self.reader).funds.is_none() {
                return;
            }
            if self.exchange(Command::Poll).await.is_err() {
                return;
            }
        }
    }

    /// Poll until the requested vend under `key` is answered, within the reader's
    /// response time; then VEND CANCEL. Errors leave the outcome unknown.
    async fn await_answer(&self, key: &PaymentKey, since: Instant) -> Result<(), LinkError> {
        let limit = since + self.response_timeout();
        loop {
            match self.state_of(key).map(|e| e.state) {
                Some(State::Requested { .. }) => {}
                _ => return Ok(()),
            }
            if Instant::now() >= limit {
                return self.cancel_unanswered(key).await;
            }
            tokio::time::sleep(self.config.poll_interval).await;
            self.exchange(Command::Poll).await?;
        }
    }

    /// The reader let its response time pass: withdraw the request. VEND CANCEL is
    /// answered VEND DENIED by a reader that has it; out of sequence means it never
    /// had it, or approved it and the approval was lost, so VEND FAILURE releases
    /// any such approval. Either way nothing stays charged.
    async fn cancel_unanswered(&self, key: &PaymentKey) -> Result<(), LinkError> {
        self.take_out_of_sequence();
        self.exchange(Command::VendCancel).await?;
        if !matches!(
            self.state_of(key).map(|e| e.state),
            Some(State::Requested { .. })
        ) {
            return Ok(());
        }
        if self.take_out_of_sequence() {
            self.exchange(Command::VendFailure).await?;
            self.take_out_of_sequence();
            self.finish(key, State::NeverCharged);
            self.end_session().await;
            return Ok(());
        }
        // Acknowledged without a denial: the denial comes on the next poll.
        self.exchange(Command::Poll).await?;
        Ok(())
    }

    pub(super) async fn authorize(&self, req: &PaymentRequest) -> Result<Outcome, PaymentError> {
        self.core.ensure_ready()?;
        if lock(&self.reader).needs_reset {
            // A session kept through a restart that nobody resumed: reset first.
            // Nothing was sent for this request yet, so a failed reset is offline.
            if lock(&self.book).current.is_some() {
                return Err(PaymentError::Busy);
            }
            self.setup().await?;
        }
        if req.instrument != crate::payment::Instrument::Any {
            // MDB has no way to tell the reader which instruments it may take.
            return Err(PaymentError::Illegal(
                "a cashless reader cannot be limited to wallets".into(),
            ));
        }
        if req.currency != self.config.currency {
            return Err(PaymentError::Illegal(format!(
                "reader takes {}, not {}",
                self.config.currency, req.currency
            )));
        }
        let scale = self.scale();
        if req.amount_minor <= 0 || req.amount_minor % scale != 0 {
            return Err(PaymentError::Illegal(format!(
                "amount {} is not a positive multiple of the reader's scale factor {scale}",
                req.amount_minor
            )));
        }
        let price = u16::try_from(req.amount_minor / scale)
            .ok()
            .filter(|p| *p < 0xFFFF)
            .ok_or_else(|| {
                PaymentError::Illegal(format!("amount {} is too large for MDB", req.amount_minor))
            })?;
        let key = req.key.clone();
        let item = {
            let mut book = lock(&self.book);
            if book.entries.contains_key(&key) {
                return Err(PaymentError::Illegal(format!("key {key} was already used")));
            }
            if book.current.is_some() {
                return Err(PaymentError::Busy);
            }
            let item = book.next_item();
            book.insert(
                key.clone(),
                Entry {
                    state: State::WaitingCard,
                    item,
                    success_sent: false,
                },
            );
            book.current = Some(key.clone());
            item
        };
        // Wait for a card. Nothing that moves money has been sent yet.
        let deadline = Instant::now() + self.config.session_wait;
        loop {
            if let Some(e) = self.state_of(&key)
                && e.state != State::WaitingCard
            {
                // Aborted by the caller.
                self.end_session().await;
                return Ok(match status_of(&e.state, e.item) {
                    KeyStatus::Done(o) => o,
                    _ => Outcome::Declined {
                        reason: "aborted".into(),
                    },
                });
            }
            if lock(&self.reader).funds.is_some() {
                break;
            }
            if Instant::now() >= deadline {
                let reason = format!("no card presented within {:?}", self.config.session_wait);
                self.finish(&key, State::Declined(reason.clone()));
                return Ok(Outcome::Declined { reason });
            }
            if let Err(e) = self.exchange(Command::Poll).await {
                // Never sent a vend: the key may be used again.
                let mut book = lock(&self.book);
                book.entries.remove(&key);
                book.order.retain(|k| k != &key);
                book.current = None;
                return Err(PaymentError::from(e.fault()));
            }
            if lock(&self.reader).funds.is_some() {
                break;
            }
            tokio::time::sleep(self.config.poll_interval).await;
        }
        let since = Instant::now();
        // Atomic with `abort`: a payment aborted while waiting never vends.
        let aborted = {
            let mut book = lock(&self.book);
            let waiting = book
                .entries
                .get(&key)
                .is_some_and(|e| e.state == State::WaitingCard);
            if waiting {
                book.set(&key, State::Requested { since });
            }
            !waiting
        };
        if aborted {
            self.end_session().await;
            return Ok(Outcome::Declined {
                reason: "aborted".into(),
            });
        }
        let answer = self
            .exchange(Command::VendRequest { price, item })
            .await
            .map_err(|e| {
                tracing::warn!(device = %self.core.id(), key = %key, error = %e,
                    "MDB vend request outcome unknown.");
                e.after_send()
            })?;
        match answer {
            Answer::Nak => {
                let reason = "reader refused the vend request block (NAK)".to_owned();
                self.finish(&key, State::Declined(reason.clone()));
                self.end_session().await;
                return Ok(Outcome::Declined { reason });
            }
            Answer::NoResponse => {
                return Err(PaymentError::OutcomeUnknown(
                    "reader did not answer the vend request on the MDB bus".into(),
                ));
            }
            Answer::Ack | Answer::Data(_) => {}
        }
        self.await_answer(&key, since)
            .await
            .map_err(|e| e.after_send())?;
        match self.state_of(&key).map(|e| e.state) {
            Some(State::Approved { .. }) => {
                self.core.count("vends_approved", 1);
                Ok(Outcome::Approved(approval(item)))
            }
            Some(State::Declined(reason)) => {
                self.finish(&key, State::Declined(reason.clone()));
                self.end_session().await;
                Ok(Outcome::Declined { reason })
            }
            Some(State::NeverCharged) => Ok(Outcome::Declined {
                reason: "reader did not answer in time; the vend was cancelled".into(),
            }),
            _ => Err(PaymentError::OutcomeUnknown(
                "reader has not answered the vend request".into(),
            )),
        }
    }

    pub(super) async fn settle(&self, key: &PaymentKey, success: bool) -> Result<(), PaymentError> {
        self.core.ensure_ready()?;
        let Some(entry) = self.state_of(key) else {
            return Err(PaymentError::Illegal(format!("no payment under key {key}")));
        };
        match (&entry.state, success) {
            (State::Settled, true) | (State::Reversed, false) => return Ok(()),
            (State::Inherited, _) => return self.settle_inherited(key, success).await,
            (State::Approved { .. }, _) => {}
            (State::Settled, false) => {
                return Err(PaymentError::Illegal(
                    "MDB level 1 cannot reverse a completed vend".into(),
                ));
            }
            (other, _) => {
                return Err(PaymentError::Illegal(format!(
                    "payment under {key} is not approved ({:?})",
                    status_of(other, entry.item)
                )));
            }
        }
        let cmd = if success {
            Command::VendSuccess { item: entry.item }
        } else {
            Command::VendFailure
        };
        self.take_out_of_sequence();
        let retry = entry.success_sent;
        if let Some(e) = lock(&self.book).entries.get_mut(key) {
            e.success_sent = true;
        }
        let answer = self.exchange(cmd).await.map_err(|e| e.after_send())?;
        let oos = self.take_out_of_sequence();
        match answer {
            Answer::Ack | Answer::Data(_) if !oos || retry => {}
            Answer::Nak | Answer::NoResponse => {
                return Err(PaymentError::OutcomeUnknown(format!(
                    "reader did not take {cmd:?}; try again"
                )));
            }
            _ => {
                return Err(PaymentError::Failure(format!(
                    "reader says {cmd:?} is out of sequence"
                )));
            }
        }
        let state = if success {
            self.core.count("vends_settled", 1);
            State::Settled
        } else {
            self.core.count("vends_reversed", 1);
            State::Reversed
        };
        self.finish(key, state);
        self.end_session().await;
        Ok(())
    }

    pub(super) async fn status(&self, key: &PaymentKey) -> Result<KeyStatus, PaymentError> {
        let Some(entry) = self.state_of(key) else {
            return Ok(KeyStatus::Unknown);
        };
        let State::Requested { since } = entry.state else {
            return Ok(status_of(&entry.state, entry.item));
        };
        // The answer was lost: ask the reader.
        let resolved = async {
            self.exchange(Command::Poll).await?;
            if matches!(
                self.state_of(key).map(|e| e.state),
                Some(State::Requested { .. })
            ) && Instant::now() >= since + self.response_timeout()
            {
                self.cancel_unanswered(key).await?;
            }
            Ok::<_, LinkError>(())
        }
        .await;
        if let Err(e) = resolved {
            return Err(PaymentError::OutcomeUnknown(format!(
                "cannot ask the reader yet: {e}"
            )));
        }
        let entry = self.state_of(key);
        let state = entry.as_ref().map(|e| e.state.clone());
        if let Some(State::Declined(_)) = &state {
            let current = lock(&self.book).current.clone();
            if current.as_ref() == Some(key) {
                lock(&self.book).current = None;
                self.end_session().await;
            }
        }
        Ok(entry.map_or(KeyStatus::Unknown, |e| status_of(&e.state, e.item)))
    }
}

/// A session the reader kept through a restart of the controller (the process was
/// killed, the reader kept its power): the new driver's open found it (no JUST
/// RESET at its first POLL) and left it alone, and `resume` bound the key of the
/// vend a previous process left open to it. VEND SUCCESS or VEND FAILURE finishes
/// it, then SESSION COMPLETE and the RESET that open put off. MDB readers answer a
/// command that does not fit their state with COMMAND OUT OF SEQUENCE: to VEND
/// SUCCESS, that the reader is not in a vend, so the VEND SUCCESS a previous
/// process sent already took the charge (nothing else ends an approved vend while
/// the reader keeps its power: VEND FAILURE is never sent for a vend being
/// captured); to VEND FAILURE, that the reader holds nothing for the vend.
impl Shared {
    /// Bind `key`, unknown to this process, to the session found open at open, if
    /// there is one. Returns the key's status.
    pub(super) fn resume(&self, key: &PaymentKey) -> KeyStatus {
        if let Some(e) = self.state_of(key) {
            return status_of(&e.state, e.item);
        }
        if !std::mem::take(&mut lock(&self.reader).inherited) {
            // The reader was reset since (JUST RESET at open, or the RESET after a
            // kept session ended): whatever it held under the key is released.
            return KeyStatus::Unknown;
        }
        let mut book = lock(&self.book);
        book.insert(
            key.clone(),
            Entry {
                state: State::Inherited,
                item: NO_ITEM,
                success_sent: true,
            },
        );
        book.current = Some(key.clone());
        KeyStatus::InProgress
    }

    /// VEND SUCCESS (`success`) or VEND FAILURE on the kept session under `key`,
    /// then SESSION COMPLETE and the reset.
    pub(super) async fn settle_inherited(
        &self,
        key: &PaymentKey,
        success: bool,
    ) -> Result<(), PaymentError> {
        let cmd = if success {
            Command::VendSuccess { item: NO_ITEM }
        } else {
            Command::VendFailure
        };
        self.take_out_of_sequence();
        let answer = self.exchange(cmd).await.map_err(|e| e.after_send())?;
        let held = match answer {
            Answer::Nak | Answer::NoResponse => {
                return Err(PaymentError::OutcomeUnknown(format!(
                    "reader did not take {cmd:?} on the session it kept; try again"
                )));
            }
            Answer::Ack | Answer::Data(_) => !self.take_out_of_sequence(),
        };
        let state = match (success, held) {
            (true, true) => {
                self.core.count("vends_settled", 1);
                State::Settled
            }
            // Not in a vend: the VEND SUCCESS sent before the restart took it.
            (true, false) => State::Settled,
            (false, true) => {
                self.core.count("vends_reversed", 1);
                State::Reversed
            }
            (false, false) => State::NeverCharged,
        };
        tracing::info!(device = %self.core.id(), key = %key, ?cmd, held,
            "Finished the MDB session the reader kept through a restart.");
        self.finish(key, state);
        self.end_session().await;
        self.reset_inherited().await;
        Ok(())
    }

    /// Withdraw the vend under the kept `key` (it may still wait for the reader's
    /// answer, or hold an approval nobody heard): VEND CANCEL, which a reader with
    /// the request pending answers VEND DENIED, else VEND FAILURE.
    pub(super) async fn abort_inherited(
        &self,
        key: &PaymentKey,
    ) -> Result<KeyStatus, PaymentError> {
        self.take_out_of_sequence();
        self.exchange(Command::VendCancel)
            .await
            .map_err(|e| e.after_send())?;
        if !self.take_out_of_sequence() && !self.is_declined(key) {
            // Acknowledged: the denial comes on the next poll.
            self.exchange(Command::Poll)
                .await
                .map_err(|e| e.after_send())?;
        }
        if self.is_declined(key) {
            self.end_session().await;
            self.reset_inherited().await;
        } else {
            self.settle_inherited(key, false).await?;
        }
        Ok(self
            .state_of(key)
            .map_or(KeyStatus::Unknown, |e| status_of(&e.state, e.item)))
    }

    fn is_declined(&self, key: &PaymentKey) -> bool {
        matches!(
            self.state_of(key).map(|e| e.state),
            Some(State::Declined(_))
        )
    }

    /// RESET and set the reader up, as open would have: after a kept session
    /// ended, or before the first new vend if recovery never asked about it.
    pub(super) async fn reset_inherited(&self) {
        if let Err(f) = self.setup().await {
            tracing::warn!(device = %self.core.id(), error = %f,
                "MDB reader reset after a kept session failed; the next vend resets it.");
            lock(&self.reader).needs_reset = true;
        }
    }
}
