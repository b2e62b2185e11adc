//! Every word the shopper page shows, in English and Russian: one entry per message,
//! so a message cannot exist in one language only. The page's script gets the words
//! it needs as `data-` attributes the server writes in the shopper's language.

use crate::console::i18n::Lang;

macro_rules! catalogue {
    ($($name:ident $id:literal => $en:literal, $ru:literal;)*) => {
        /// A message of the shopper page.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[allow(missing_docs)]
        pub enum Msg { $($name),* }

        impl Msg {
            /// Every message.
            pub const ALL: &[Msg] = &[$(Msg::$name),*];

            /// The message's id (also its `data-` attribute's name).
            pub fn id(self) -> &'static str {
                match self { $(Msg::$name => $id),* }
            }

            /// The message in `lang`.
            pub fn text(self, lang: Lang) -> &'static str {
                match (self, lang) {
                    $((Msg::$name, Lang::En) => $en, (Msg::$name, Lang::Ru) => $ru,)*
                }
            }
        }
    };
}

catalogue! {
    Title "title" => "Scan and go", "Сканируй и иди";
    Intro "intro" => "Scan products with your camera or type their barcode. Your cart is on this phone only.", "Сканируйте товары камерой или введите штрихкод. Корзина видна только на этом телефоне.";
    Scan "scan" => "Scan with the camera", "Сканировать камерой";
    StopScan "stop-scan" => "Stop the camera", "Выключить камеру";
    NoCamera "no-camera" => "This browser cannot read barcodes with the camera: type the barcode instead.", "Этот браузер не умеет читать штрихкоды камерой: введите штрихкод вручную.";
    CameraFailed "camera-failed" => "The camera could not be opened: type the barcode instead.", "Камера не открылась: введите штрихкод вручную.";
    Barcode "barcode" => "Barcode", "Штрихкод";
    Add "add" => "Add", "Добавить";
    Cart "cart" => "Your cart", "Ваша корзина";
    Empty "empty" => "Your cart is empty.", "Корзина пуста.";
    Remove "remove" => "Remove", "Убрать";
    Subtotal "subtotal" => "Subtotal", "Сумма";
    Discounts "discounts" => "Discounts", "Скидки";
    Total "total" => "Total", "Итого";
    Added "added" => "Added:", "Добавлено:";
    Starting "starting" => "Starting…", "Подключение…";
    NeedQr "need-qr" => "Scan the QR code at the store's entrance to start.", "Чтобы начать, отсканируйте QR-код у входа в магазин.";
    ErrUnknownProduct "err-unknown_product" => "No product with this barcode.", "Товара с таким штрихкодом нет.";
    ErrQuantity "err-invalid_quantity" => "That many cannot be added to one line.", "Столько в одну строку добавить нельзя.";
    ErrCartFull "err-cart_full" => "Your cart is full.", "Корзина заполнена.";
    ErrRateLimited "err-rate_limited" => "Too many requests: wait a moment and try again.", "Слишком много запросов: подождите немного.";
    ErrSession "err-shopper_session_unknown" => "Your session ended: scan the QR code at the entrance again.", "Сеанс завершён: снова отсканируйте QR-код у входа.";
    ErrTokenExpired "err-store_token_expired" => "This store QR code has expired: scan the current one.", "Срок действия QR-кода истёк: отсканируйте действующий.";
    ErrTokenInvalid "err-store_token_invalid" => "This QR code is not one of this store.", "Этот QR-код не от этого магазина.";
    ErrFull "err-shopper_sessions_full" => "Too many shoppers right now: try again in a minute.", "Сейчас слишком много покупателей: попробуйте через минуту.";
    ErrOther "err-other" => "That did not work:", "Не получилось:";
    PayLater "pay-later" => "Paying on the phone is not available in this store: take your items to a staffed till.", "В этом магазине нельзя оплатить с телефона: оплатите покупки на кассе.";
    Pay "pay" => "Pay with your phone", "Оплатить с телефона";
    Going "going" => "Opening the payment page…", "Открываем страницу оплаты…";
    Paying "paying" => "Waiting for your payment…", "Ждём оплату…";
    OpenWallet "open-wallet" => "Open the payment page again", "Снова открыть страницу оплаты";
    CancelPay "cancel-pay" => "Cancel the payment", "Отменить оплату";
    Cancelled "cancelled" => "The payment was cancelled: you can change your cart and pay again.", "Оплата отменена: можно изменить корзину и оплатить снова.";
    Paid "paid" => "Paid. Thank you!", "Оплачено. Спасибо!";
    PaidTotal "paid-total" => "You paid", "Вы заплатили";
    ExitCode "exit-code" => "Your exit code", "Ваш код для выхода";
    ShowAtExit "show-at-exit" => "Show this code at the exit.", "Покажите этот код на выходе.";
    ErrDeclined "err-payment_declined" => "The payment did not go through: you can pay again.", "Оплата не прошла: можно оплатить снова.";
    ErrNoPay "err-payment_terminal_unavailable" => "Paying on the phone is not available right now: take your items to a staffed till.", "Оплата с телефона сейчас недоступна: оплатите покупки на кассе.";
    ErrPaying "err-checkout_in_progress" => "Your cart is being paid: finish or cancel the payment first.", "Корзина оплачивается: сначала завершите или отмените оплату.";
    ErrAge "err-age_verification_required" => "Your cart has age-restricted products: pay at a staffed till.", "В корзине товары с возрастным ограничением: оплатите их на кассе.";
    ErrCartEmpty "err-cart_empty" => "Your cart is empty.", "Ваша корзина пуста.";
    LoyaltyCard "loyalty-card" => "Loyalty card (optional)", "Карта лояльности (необязательно)";
    UseCard "use-card" => "Use", "Применить";
    CardAdded "card-added" => "Loyalty card added. Your points:", "Карта лояльности добавлена. Ваши баллы:";
    PointsEarned "points-earned" => "Points earned:", "Начислено баллов:";
    ErrUnknownCustomer "err-unknown_customer" => "No loyalty card with this number.", "Карты лояльности с таким номером нет.";
    ErrInvalidCard "err-invalid_card" => "That is not a loyalty card number.", "Это не номер карты лояльности.";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_has_a_distinct_id_and_both_languages() {
        let mut ids = std::collections::BTreeSet::new();
        for m in Msg::ALL {
            assert!(ids.insert(m.id()), "{m:?}");
            assert!(
                m.id()
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '-' || c == '_')
            );
            for l in Lang::ALL {
                assert!(!m.text(l).is_empty(), "{m:?} {l:?}");
            }
            assert_ne!(m.text(Lang::En), m.text(Lang::Ru), "{m:?}");
        }
    }
}
