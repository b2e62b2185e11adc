//! Every word the console shows, in English and Russian: one entry per message, so a
//! message cannot exist in one language only, and templates name messages, never
//! text. Values of enums the pages show (device kinds, states) have entries with
//! ids `group.value`, looked up by [`Msg::lookup`].

use super::i18n::Lang;

macro_rules! catalogue {
    ($($name:ident $id:literal => $en:literal, $ru:literal;)*) => {
        /// A message of the catalogue.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[allow(missing_docs)]
        pub enum Msg { $($name),* }

        impl Msg {
            /// Every message.
            pub const ALL: &[Msg] = &[$(Msg::$name),*];

            /// The message's id (`nav.devices`, `kind.receipt_printer`).
            pub fn id(self) -> &'static str {
                match self { $(Msg::$name => $id),* }
            }

            /// The message in `lang`.
            pub fn text(self, lang: Lang) -> &'static str {
                match (self, lang) {
                    $((Msg::$name, Lang::En) => $en, (Msg::$name, Lang::Ru) => $ru,)*
                }
            }

            /// The message with this id.
            pub fn lookup(id: &str) -> Option<Msg> {
                match id { $($id => Some(Msg::$name),)* _ => None }
            }
        }
    };
}

impl Lang {
    /// The catalogue's text of `msg`.
    pub fn t(self, msg: Msg) -> &'static str {
        msg.text(self)
    }
}

catalogue! {
    ConsoleTitle "console.title" => "Technician console", "Консоль техника";
    SkipToContent "skip" => "Skip to content", "Перейти к содержимому";
    NavLabel "nav" => "Console pages", "Разделы консоли";
    NavDashboard "nav.dashboard" => "Dashboard", "Обзор";
    NavDevices "nav.devices" => "Devices", "Устройства";
    NavSales "nav.sales" => "Sales", "Продажи";
    NavStock "nav.stock" => "Inventory and catalog", "Остатки и каталог";
    NavSync "nav.sync" => "Sync and mesh", "Синхронизация и сеть";
    NavUpdates "nav.updates" => "Updates", "Обновления";
    NavLogs "nav.logs" => "Logs", "Журнал событий";
    NavSecurity "nav.security" => "Security and admin", "Безопасность и доступ";
    LogIn "login" => "Log in", "Войти";
    LogOut "logout" => "Log out", "Выйти";
    LoginIntro "login.intro" => "Use your staff account: the same one as for the store's API.", "Войдите под своей учётной записью сотрудника, той же, что и для программного интерфейса магазина.";
    LoginFailed "login.failed" => "Wrong username or password.", "Неверное имя пользователя или пароль.";
    LoginThrottled "login.throttled" => "Too many attempts. Wait a minute and try again.", "Слишком много попыток. Подождите минуту и попробуйте снова.";
    Username "username" => "Username", "Имя пользователя";
    Password "password" => "Password", "Пароль";
    BackToDashboard "back" => "Back to the dashboard", "Вернуться к обзору";

    ErrTitle "err.title" => "Something went wrong", "Что-то пошло не так";
    ErrForbidden "err.forbidden" => "Your role may not open this page or do this.", "Вашей роли это действие или страница недоступны.";
    ErrTerminal "err.terminal" => "Terminal tokens cannot use the console: log in with a staff account.", "Токены терминалов не дают доступа к консоли: войдите под учётной записью сотрудника.";
    ErrCsrf "err.csrf" => "The form was refused: it did not come from this console session. Reload the page and try again.", "Форма отклонена: она отправлена не из этого сеанса консоли. Обновите страницу и повторите.";
    ErrLocked "err.locked" => "This unit is locked: no actions until HQ unlocks it.", "Устройство заблокировано: действия невозможны, пока центральный офис его не разблокирует.";
    ErrBadForm "err.form" => "The form is not complete or holds a value that is not allowed.", "Форма заполнена не полностью или содержит недопустимое значение.";
    ErrInternal "err.internal" => "The server could not do this. Try again; if it keeps failing, look at the logs.", "Сервер не смог это выполнить. Повторите; если ошибка повторяется, посмотрите журнал.";
    ErrNotFound "err.not_found" => "There is no such thing here.", "Такого объекта нет.";
    ErrNoDevice "err.no_device" => "There is no such device.", "Такого устройства нет.";
    ErrNoSale "err.no_sale" => "There is no such sale.", "Такой продажи нет.";
    Unavailable "unavailable" => "Cannot be read now:", "Сейчас недоступно:";
    ActionFailed "action.failed" => "The action failed:", "Действие не выполнено:";

    Alerts "alerts" => "Active alerts", "Активные предупреждения";
    AlertNone "alert.none" => "No alerts: everything works.", "Предупреждений нет: всё работает.";
    AlertLocked "alert.locked" => "The unit is locked: it cannot sell or refund.", "Устройство заблокировано: продажи и возвраты невозможны.";
    TodoLocked "todo.locked" => "Call HQ and follow the unlock procedure on the Security page.", "Позвоните в центральный офис и выполните процедуру разблокировки со страницы «Безопасность».";
    AlertGrace "alert.grace" => "The presence lease expired: the unit sells in its offline grace and will lock.", "Срок аренды присутствия истёк: устройство работает в льготный период и скоро заблокируется.";
    TodoGrace "todo.grace" => "Restore the link to HQ so it can renew the lease before the time runs out.", "Восстановите связь с центральным офисом, чтобы он продлил аренду до истечения времени.";
    AlertLeaseSoon "alert.lease_soon" => "The presence lease expires soon.", "Срок аренды присутствия скоро истекает.";
    TodoLeaseSoon "todo.lease_soon" => "Check that the unit reaches HQ: HQ renews the lease when it does.", "Проверьте связь с центральным офисом: при связи он продлевает аренду.";
    AlertBacklog "alert.backlog" => "Sales have been waiting too long to reach HQ.", "Продажи слишком долго ждут отправки в центральный офис.";
    TodoBacklog "todo.backlog" => "Check the WAN link and the HQ address on the Sync page; nothing is lost meanwhile.", "Проверьте внешний канал и адрес центрального офиса на странице синхронизации; данные при этом не теряются.";
    AlertHqDown "alert.hq_down" => "No connection to HQ.", "Нет связи с центральным офисом.";
    TodoHqDown "todo.hq_down" => "Selling goes on. Check the internet link; the unit catches up by itself.", "Продажи продолжаются. Проверьте подключение к интернету; устройство догонит само.";
    AlertDeviceDown "alert.device_down" => "A device does not work.", "Устройство не работает.";
    TodoDeviceDown "todo.device_down" => "Check its power and cable, then run a health check on the Devices page.", "Проверьте питание и кабель, затем запустите проверку на странице «Устройства».";
    AlertDeviceDegraded "alert.device_degraded" => "A device needs attention soon.", "Устройству скоро потребуется внимание.";
    TodoDeviceDegraded "todo.device_degraded" => "Look at its health on the Devices page (paper, coin box).", "Посмотрите его состояние на странице «Устройства» (бумага, монетница).";
    AlertReceiptsWaiting "alert.receipts" => "Receipts are waiting for the printer.", "Чеки ждут печати.";
    TodoReceiptsWaiting "todo.receipts" => "Fix the printer (paper, cover, cable); the queue prints by itself.", "Исправьте принтер (бумага, крышка, кабель); очередь напечатается сама.";
    AlertDiskLow "alert.disk" => "The disk is nearly full.", "Диск почти заполнен.";
    TodoDiskLow "todo.disk" => "Free space on the data disk before the unit cannot record sales.", "Освободите место на диске данных, пока устройство может записывать продажи.";
    AlertUpdateFailed "alert.update" => "The last update was rolled back.", "Последнее обновление было откачено.";
    TodoUpdateFailed "todo.update" => "The previous release runs. Send the reason on the Updates page to HQ.", "Работает предыдущая версия. Передайте причину со страницы «Обновления» в центральный офис.";

    AlertVending "alert.vending" => "The vending machine raised alerts.", "Торговый автомат выдал предупреждения.";
    TodoVending "todo.vending" => "Open the Vending machine page: each alert there says what to do.", "Откройте страницу «Торговый автомат»: там у каждого предупреждения сказано, что делать.";

    ThisUnit "unit" => "This unit", "Это устройство";
    Version "version" => "Version", "Версия";
    Uptime "uptime" => "Running for", "Работает";
    StoreName "store" => "Store", "Магазин";
    Disk "disk" => "Data disk", "Диск данных";
    FreeOf "free_of" => "free of", "свободно из";
    Unknown "unknown" => "Unknown", "Неизвестно";
    LockAndLease "lock" => "Lock and lease", "Блокировка и аренда";
    State "state" => "State", "Состояние";
    TimeLeft "time_left" => "Time left", "Осталось";
    Transactions "transactions" => "Sales and refunds", "Продажи и возвраты";
    Allowed "allowed" => "Allowed", "Разрешены";
    Refused "refused" => "Refused", "Запрещены";
    Why "why" => "Reason", "Причина";
    HqLink "hq" => "Link to HQ", "Связь с центральным офисом";
    Connection "connection" => "Connection", "Соединение";
    NotConfigured "not_configured" => "Not configured", "Не настроено";
    Connected "connected" => "Connected", "Подключено";
    Disconnected "disconnected" => "Disconnected", "Нет соединения";
    Backlog "backlog" => "Waiting to send", "Ожидает отправки";
    OldestEntry "oldest" => "Oldest waiting", "Самое старое ждёт";
    LastSync "last_sync" => "Last sync", "Последняя синхронизация";
    CatalogVersion "catalog_version" => "Catalog version", "Версия каталога";
    PromotionsVersion "promotions_version" => "Promotions version", "Версия акций";
    StoreMesh "mesh" => "Store mesh", "Сеть магазина";
    MeshOff "mesh.off" => "The store mesh is off on this unit.", "Сеть магазина на этом устройстве выключена.";
    Peers "peers" => "Peers", "Соседи";
    Artifacts "artifacts" => "Shared files", "Общие файлы";
    Working "working" => "Working", "Работают";
    ReceiptQueue "receipt_queue" => "Receipt queue", "Очередь чеков";
    OfflineCardPayments "offline_card_payments" => "Offline card payments (store / largest card)", "Офлайн-оплаты картой (магазин / одна карта)";
    LastSale "last_sale" => "Last sale", "Последняя продажа";
    When "when" => "When", "Когда";
    Terminal "terminal" => "Terminal", "Терминал";
    Total "total" => "Total", "Итого";
    OpenSale "open_sale" => "Open the sale", "Открыть продажу";
    NoSalesYet "no_sales" => "No sale in the last 30 days.", "Продаж за последние 30 дней нет.";

    DevicesCaption "devices.caption" => "Every configured device, printers first.", "Все настроенные устройства, сначала принтеры.";
    Device "device" => "Device", "Устройство";
    Kind "kind" => "Kind", "Тип";
    Health "health" => "Health", "Исправность";
    LastError "last_error" => "Last error", "Последняя ошибка";
    Actions "actions" => "Actions", "Действия";
    HealthCheck "health_check" => "Health check", "Проверить";
    TestPrint "test_print" => "Test print", "Пробная печать";
    OpenDrawer "open_drawer" => "Open drawer", "Открыть ящик";
    PrinterNotPrinting "printer_not_printing" => "The printer is not printing:", "Принтер не печатает:";
    QueueEmpty "queue_empty" => "No receipts are waiting.", "Чеков в очереди нет.";
    Queued "queued" => "Queued", "В очереди с";
    DoneHealthCheck "done.health_check" => "Health check done:", "Проверка выполнена:";
    DoneTestPrint "done.test_print" => "Test page printed:", "Пробная страница напечатана:";
    DoneOpenDrawer "done.open_drawer" => "Drawer opened:", "Ящик открыт:";
    DoneRefund "done.refund" => "Refund recorded.", "Возврат оформлен.";
    DoneReprinted "done.reprinted" => "Receipt printed again.", "Чек напечатан повторно.";
    DoneReprintQueued "done.reprint_queued" => "Receipt queued: the printer prints it when it can.", "Чек поставлен в очередь: принтер напечатает его, когда сможет.";

    KindReceiptPrinter "kind.receipt_printer" => "Receipt printer", "Чековый принтер";
    KindCashDrawer "kind.cash_drawer" => "Cash drawer", "Денежный ящик";
    KindBarcodeScanner "kind.barcode_scanner" => "Barcode scanner", "Сканер штрихкодов";
    KindScale "kind.scale" => "Scale", "Весы";
    KindCustomerDisplay "kind.customer_display" => "Customer display", "Дисплей покупателя";
    KindPaymentTerminal "kind.payment_terminal" => "Payment terminal", "Платёжный терминал";
    KindCashAcceptor "kind.cash_acceptor" => "Cash acceptor", "Купюроприёмник";
    KindVendDispenser "kind.vend_dispenser" => "Vending dispenser", "Механизм выдачи";
    KindEnvironmentSensor "kind.environment_sensor" => "Sensor", "Датчик";
    StateClosed "state.closed" => "Closed", "Закрыто";
    StateIdle "state.idle" => "Ready", "Готово";
    StateBusy "state.busy" => "Busy", "Занято";
    StateError "state.error" => "Error", "Ошибка";
    HealthUnknown "health.unknown" => "Not checked yet", "Ещё не проверено";
    HealthOk "health.ok" => "OK", "Исправно";
    HealthDegraded "health.degraded" => "Needs attention", "Требует внимания";
    HealthFailed "health.failed" => "Failed", "Неисправно";
    LeaseOff "lease.off" => "Off (not enrolled)", "Выключена (не зарегистрировано)";
    LeaseActive "lease.active" => "Active", "Действует";
    LeaseGrace "lease.grace" => "Grace period", "Льготный период";
    LeaseLocked "lease.locked" => "Locked", "Заблокировано";
    KeyInMemory "key.in_memory" => "In memory", "В памяти";
    KeyWiped "key.wiped" => "Wiped (locked down)", "Стёрт (блокировка)";
    SaleCompleted "sale.completed" => "Completed", "Завершена";
    SalePartiallyRefunded "sale.partially_refunded" => "Partly refunded", "Частично возвращена";
    SaleRefunded "sale.refunded" => "Refunded", "Возвращена";
    TenderCash "tender.cash" => "Cash", "Наличные";
    TenderCard "tender.card" => "Card", "Карта";
    TenderWallet "tender.wallet" => "Wallet", "Кошелёк";
    ReceiptPrinted "receipt.printed" => "Printed", "Напечатан";
    ReceiptQueued "receipt.queued" => "Waiting for the printer", "Ждёт принтер";
    ReceiptNotQueued "receipt.not_queued" => "Not queued", "Не в очереди";
    MovementSale "movement.sale" => "Sale", "Продажа";
    MovementRefund "movement.refund" => "Refund", "Возврат";
    MovementAdjustment "movement.adjustment" => "Adjustment", "Корректировка";
    MovementReceipt "movement.receipt" => "Goods received", "Приёмка";
    MovementCount "movement.count" => "Stock count", "Инвентаризация";
    PeerConnected "peer.connected" => "Connected", "Подключён";
    PeerDisconnected "peer.disconnected" => "Disconnected", "Отключён";
    PeerBanned "peer.banned" => "Banned", "Заблокирован";
    PeerRejected "peer.rejected" => "Not on the roster", "Нет в списке";
    ArtifactFetching "artifact.fetching" => "Fetching", "Загружается";
    ArtifactApplying "artifact.applying" => "Applying", "Применяется";
    ArtifactApplied "artifact.applied" => "Applied", "Применён";
    ArtifactFailed "artifact.failed" => "Failed", "Ошибка";
    SyncOk "sync.ok" => "OK", "В порядке";
    SyncDegraded "sync.degraded" => "Degraded", "Есть проблемы";
    UpdateInstalled "update.installed" => "Installed", "Установлено";
    UpdateRolledBack "update.rolled_back" => "Rolled back", "Откачено";
    UpdateRolledBackByHand "update.rolled_back_by_hand" => "Rolled back by hand", "Откачено вручную";
    RoleSupervisor "role.supervisor" => "Supervisor", "Старший кассир";
    RoleTechnician "role.technician" => "Technician", "Техник";
    RoleAdmin "role.admin" => "Administrator", "Администратор";
    RoleCashierTerminal "role.cashier_terminal" => "Cashier terminal", "Кассовый терминал";

    From "from" => "From", "С";
    To "to" => "To", "По";
    MinAmount "min" => "Total at least", "Сумма от";
    MaxAmount "max" => "Total at most", "Сумма до";
    Search "search" => "Search", "Найти";
    TimesInUtc "utc" => "Times are in UTC.", "Время указано в UTC.";
    BadFrom "bad.from" => "The start time is not a date and time.", "Время начала не является датой и временем.";
    BadTo "bad.to" => "The end time is not a date and time.", "Время окончания не является датой и временем.";
    BadAmount "bad.amount" => "An amount is not a number in the store's currency.", "Сумма не является числом в валюте магазина.";
    SearchTruncated "search.truncated" => "Many sales match: only part of the window was searched. Narrow the time window.", "Совпадений слишком много: просмотрена только часть периода. Сузьте период.";
    NoSalesFound "no_sales_found" => "No sales match.", "Подходящих продаж нет.";
    Items "items" => "Items", "Позиции";
    Sale "sale" => "Sale", "Продажа";
    Subtotal "subtotal" => "Subtotal", "Сумма без скидок";
    Discounts "discounts" => "Discounts", "Скидки";
    Tax "tax" => "Tax", "Налог";
    Change "change" => "Change", "Сдача";
    Receipt "receipt" => "Receipt", "Чек";
    ReceiptAsPrinted "receipt_printed" => "Receipt as printed", "Чек, как он напечатан";
    Sku "sku" => "Item code", "Артикул";
    Product "product" => "Product", "Товар";
    Quantity "quantity" => "Quantity", "Количество";
    Price "price" => "Price", "Цена";
    Grams "grams" => "g", "г";
    Refunds "refunds" => "Refunds", "Возвраты";
    NoRefunds "no_refunds" => "No refunds.", "Возвратов нет.";
    RefundReason "refund_reason" => "Reason for the refund", "Причина возврата";
    RefundAll "refund_all" => "Refund everything left", "Вернуть всё оставшееся";
    RefundFailed "refund_failed" => "The refund was refused.", "Возврат отклонён.";
    RefundExceeds "refund_exceeds" => "That is more than is left to refund of a line: nothing was refunded. The column “Left to refund” shows what is left.", "Это больше, чем осталось вернуть по позиции: ничего не возвращено. Сколько осталось, показано в столбце «Осталось вернуть».";
    LeftToRefund "left_to_refund" => "Left to refund", "Осталось вернуть";
    RefundNow "refund_now" => "Refund now", "Вернуть сейчас";
    RefundLinesHelp "refund_lines.help" => "Enter how many of each line to refund (grams for goods sold by weight), then refund the chosen quantities.", "Укажите, сколько вернуть по каждой позиции (для весового товара — в граммах), затем оформите возврат выбранного.";
    RefundChosen "refund_chosen" => "Refund the chosen quantities", "Вернуть выбранное";
    NoLinesChosen "refund_lines.none" => "Choose a quantity to refund on at least one line.", "Укажите количество для возврата хотя бы по одной позиции.";
    BadRefundQuantity "bad.refund_quantity" => "A quantity to refund is not a whole number.", "Количество для возврата не является целым числом.";
    Reprint "reprint" => "Print the receipt again", "Напечатать чек повторно";

    StockReadOnly "stock.read_only" => "HQ owns products, prices and promotions. Stock counts and adjustments are entered here or through the store API.", "Товары, цены и акции ведёт центральный офис. Инвентаризация и корректировки вносятся здесь или через программный интерфейс магазина.";
    AdjustStock "adjust" => "Adjust stock", "Корректировка остатка";
    Delta "delta" => "Change (negative to take off)", "Изменение (отрицательное — списание)";
    IsDelivery "delivery" => "A delivery (goods received)", "Поставка (приёмка товара)";
    Record "record" => "Record", "Записать";
    BadDelta "bad.delta" => "The change is not a whole number.", "Изменение не является целым числом.";
    AdjustFailed "adjust.failed" => "The adjustment was refused.", "Корректировка отклонена.";
    DoneAdjusted "done.adjusted" => "Stock adjusted:", "Остаток скорректирован:";
    CountStock "count" => "Count stock", "Пересчёт остатка";
    CountHelp "count.help" => "Enter what you counted on the shelf: the difference from the stock is recorded as a count with your reason.", "Введите, сколько насчитано на полке: разница с остатком будет записана как инвентаризация с вашей причиной.";
    Counted "counted" => "Counted", "Насчитано";
    RecordCount "count.record" => "Record the count", "Записать пересчёт";
    BadCount "bad.count" => "The count is not a whole number.", "Пересчёт не является целым числом.";
    CountFailed "count.failed" => "The count was refused.", "Пересчёт отклонён.";
    DoneCounted "done.counted" => "Stock counted:", "Остаток пересчитан:";
    DoneCountSame "done.count_same" => "The count matches the stock, nothing to record:", "Пересчёт совпадает с остатком, записывать нечего:";
    SearchProducts "search_products" => "Name, item code or word", "Название, артикул или слово";
    QueryTooLong "query_too_long" => "The search is too long (at most 200 characters).", "Слишком длинный запрос (не более 200 символов).";
    Products "products" => "Products", "Товары";
    NoProductsFound "no_products" => "No products match.", "Подходящих товаров нет.";
    Category "category" => "Category", "Категория";
    InStock "in_stock" => "In stock", "Остаток";
    MoreProducts "more_products" => "More products match: refine the search.", "Подходит больше товаров: уточните запрос.";
    PromotionsNow "promotions_now" => "Promotions in force", "Действующие акции";
    Until "until" => "until", "до";
    RecentMovements "movements" => "Recent stock movements", "Последние движения остатков";
    None "none" => "None.", "Нет.";

    AckedSeq "acked" => "Confirmed by HQ up to", "Подтверждено офисом до";
    Sent "sent" => "Messages sent", "Отправлено сообщений";
    Sessions "sessions" => "Sessions", "Сеансов";
    BacklogByKind "backlog_by_kind" => "Events waiting, by kind", "Ожидающие события по типам";
    KindDeviceEvents "events.device" => "Device events", "События устройств";
    KindAlerts "events.alert" => "Alerts", "Предупреждения";
    KindTelemetry "events.telemetry" => "Telemetry", "Телеметрия";
    PushedVersions "pushed" => "Versions received from HQ", "Версии, полученные от офиса";
    TaxVersion "tax_version" => "Tax table", "Налоговая таблица";
    PlanogramVersion "planogram_version" => "Planogram", "Планограмма";
    StoreConfigVersion "store_config_version" => "Store settings", "Настройки магазина";
    DeviceConfigVersion "device_config_version" => "Device settings (received / applied)", "Настройки устройств (получено / применено)";
    ThisNode "this_node" => "This node:", "Этот узел:";
    NoPeers "no_peers" => "No peers seen.", "Соседи не обнаружены.";
    Peer "peer" => "Peer", "Сосед";
    LastSeen "last_seen" => "Last seen (ago)", "Виден (назад)";
    Artifact "artifact" => "File", "Файл";
    Size "size" => "Size", "Размер";
    FromOrigin "from_origin" => "From HQ", "От офиса";
    FromPeers "from_peers" => "From peers", "От соседей";
    ServedToPeers "served" => "Given to peers", "Отдано соседям";
    CatalogSnapshots "snapshots" => "Catalog snapshots from HQ", "Снимки каталога от офиса";

    Releases "releases" => "Releases", "Версии";
    Running "running" => "Running", "Запущена";
    Target "target" => "Platform", "Платформа";
    Current "current" => "Current", "Текущая";
    Previous "previous" => "Previous", "Предыдущая";
    Installed "installed" => "Installed", "Установлены";
    Floor "floor" => "Lowest allowed", "Минимально допустимая";
    NoReleasesDir "no_releases" => "This unit does not update itself: no releases directory is configured.", "Это устройство не обновляется само: каталог версий не настроен.";
    OnProbation "probation" => "On probation", "На испытании";
    Starts "starts" => "Starts", "Запусков";
    LastUpdate "last_update" => "Last update", "Последнее обновление";
    Result "result" => "Result", "Результат";
    ApplyUpdate "apply_update" => "Apply an update", "Установить обновление";
    ApplyHelp "apply_help" => "Give the directory of a release bundle on this unit. It is verified, tested on a copy of the data and switched to; the server then restarts and a failure rolls back by itself.", "Укажите каталог пакета версии на этом устройстве. Он будет проверен, испытан на копии данных и включён; затем сервер перезапустится, а при сбое вернётся к прежней версии сам.";
    RollbackHelp "rollback_help" => "To go back to the previous release by hand, run on the unit:", "Чтобы вручную вернуться к предыдущей версии, выполните на устройстве:";
    BundleDir "bundle" => "Bundle directory", "Каталог пакета";
    Apply "apply" => "Apply", "Применить";
    UpdateApplied "update.applied" => "Update applied; the server restarts into", "Обновление применено; сервер перезапускается в версию";
    UpdateRefused "update.refused" => "The update was refused.", "Обновление отклонено.";
    RollbackTo "rollback_to" => "Roll back to the previous release", "Вернуться к предыдущей версии";
    RollbackNow "rollback_now" => "Roll back", "Вернуть";
    RollbackStarted "update.rolling_back" => "Rolling back; the server restarts into", "Возврат; сервер перезапускается в версию";
    RollbackRefused "update.rollback_refused" => "The rollback was refused.", "Возврат отклонён.";

    LogsHelp "logs.help" => "The newest lines the server keeps in memory, as they come.", "Последние строки, которые сервер хранит в памяти, по мере появления.";
    Level "level" => "Least severe level", "Минимальный уровень";
    LevelError "level.error" => "Errors", "Ошибки";
    LevelWarn "level.warn" => "Warnings", "Предупреждения";
    LevelInfo "level.info" => "Information", "Информация";
    LevelDebug "level.debug" => "Debugging", "Отладка";
    LevelTrace "level.trace" => "Everything", "Всё";
    Module "module" => "Module contains", "Модуль содержит";
    LiveLog "live_log" => "Live log", "Журнал в реальном времени";
    DownloadLogs "download_logs" => "Download", "Скачать";
    LastMinutes "last_minutes" => "Last minutes", "Последние минуты";
    Download "download" => "Download", "Скачать";

    DataKey "data_key" => "Data key", "Ключ данных";
    UnlockPolicy "unlock_policy" => "Unlock policy", "Способ разблокировки";
    UnlockProcedure "unlock" => "Unlocking a locked unit", "Разблокировка устройства";
    Unlock1 "unlock.1" => "Find the reason above (no lease, grace over, HQ lock or tamper).", "Найдите причину выше (нет аренды, льготный период истёк, блокировка офисом или вскрытие).";
    Unlock2 "unlock.2" => "Call HQ with the store and unit name; tell them the reason.", "Позвоните в центральный офис, назовите магазин, устройство и причину.";
    Unlock3 "unlock.3" => "HQ sends a signed unlock or a new lease over the link; if the unit was tampered with, HQ releases the data key through its escrow.", "Офис присылает подписанную разблокировку или новую аренду по каналу связи; при вскрытии офис возвращает ключ данных через депонирование.";
    Unlock4 "unlock.4" => "This page shows Active once it arrived; reload the terminals.", "Когда она придёт, здесь будет «Действует»; перезапустите терминалы.";
    AuditLog "audit" => "Audit log (newest first)", "Журнал аудита (сначала новые)";
    ChainVerified "chain.ok" => "The hash chain verifies: no entry was changed or removed.", "Цепочка хешей сходится: ни одна запись не изменена и не удалена.";
    ChainBroken "chain.broken" => "The hash chain does not verify:", "Цепочка хешей не сходится:";
    Who "who" => "Who", "Кто";
    Action "action" => "Action", "Действие";
    Detail "detail" => "Detail", "Подробности";
    StaffAccounts "users" => "Staff accounts", "Учётные записи сотрудников";
    Roles "roles" => "Roles", "Роли";
    Enabled "enabled" => "Enabled", "Включена";
    Disabled "disabled" => "Disabled", "Отключена";
    UsersHelp "users.help" => "A new account's password is shown once. Accounts are changed and disabled through the admin API, or on the unit with:", "Пароль новой учётной записи показывается один раз. Учётные записи меняются и отключаются через программный интерфейс администратора или на устройстве командой:";
    TerminalTokens "terminals" => "Terminal tokens", "Токены терминалов";
    Issued "issued" => "Issued", "Выдан";
    Revoked "revoked" => "Revoked", "Отозван";
    Active "active" => "Active", "Действует";
    Revoke "revoke" => "Revoke", "Отозвать";
    TerminalRevoked "terminal.revoked" => "Token revoked:", "Токен отозван:";
    TerminalsHelp "terminals.help" => "A token is shown once, when it is issued, here or on the unit with:", "Токен показывается один раз, при выдаче — здесь или на устройстве командой:";
    IssueToken "token.issue" => "Issue a token", "Выдать токен";
    TheToken "token" => "Its token:", "Его токен:";
    TerminalName "terminal.name" => "Terminal name", "Имя терминала";
    TokenIssued "token.issued" => "Token issued for the terminal", "Токен выдан терминалу";
    ShownOnce "shown.once" => "Copy it into the terminal now: it is shown this once and cannot be shown again (only its hash is kept). Lost, it is revoked and a new one issued.", "Скопируйте его в терминал сейчас: он показывается только один раз и больше не может быть показан (хранится лишь его хеш). Если он утерян, его отзывают и выдают новый.";
    AddStaff "staff.add" => "Add a staff account", "Добавить учётную запись";
    NewUsername "username.new" => "Username (letters, digits, - _ . @)", "Имя пользователя (буквы, цифры, - _ . @)";
    StaffAdded "staff.added" => "Account added", "Учётная запись добавлена";
    FirstPassword "password.first" => "Its password (give it to the person in private; they log in with it)", "Пароль (передайте его лично; с ним входят в систему)";
    AccountExists "account.exists" => "An account with that name exists already: change it through the admin API or on the unit.", "Учётная запись с таким именем уже есть: измените её через программный интерфейс администратора или на устройстве.";
    NoRoleChosen "role.none" => "Choose at least one role.", "Выберите хотя бы одну роль.";
    NavVending "nav.vending" => "Vending machine", "Торговый автомат";
    NoVendingMachine "vending.none" => "This unit runs no vending machine.", "Это устройство не управляет торговым автоматом.";
    MachineAlerts "vending.alerts" => "Machine alerts", "Предупреждения автомата";
    VAlertNone "valert.none" => "No alerts: the machine sells.", "Предупреждений нет: автомат продаёт.";
    Since "since" => "since", "с";
    VAlertTemperature "valert.temperature" => "Chilled goods were too warm for too long: chilled slots do not sell.", "Охлаждаемый товар слишком долго был тёплым: охлаждаемые ячейки не продают.";
    VTodoTemperature "vtodo.temperature" => "Check the cooling unit and the door seal, throw away what spoiled, and clear the alert once the compartment is at 7 °C or colder.", "Проверьте холодильный агрегат и уплотнитель двери, утилизируйте испорченное и сбросьте предупреждение, когда в отсеке будет 7 °C или холоднее.";
    VAlertDoor "valert.door_open" => "The machine's door is open.", "Дверь автомата открыта.";
    VTodoDoor "vtodo.door_open" => "Close and lock the door; the alert clears by itself.", "Закройте и заприте дверь; предупреждение снимется само.";
    VAlertSlotLow "valert.slot_low" => "A slot is below its refill level:", "Ячейка ниже уровня пополнения:";
    VTodoSlotLow "vtodo.slot_low" => "Refill it on the next visit (refill or count through the API).", "Пополните её при следующем визите (пополнение или пересчёт через программный интерфейс).";
    VAlertSlotEmpty "valert.slot_empty" => "A slot is empty:", "Ячейка пуста:";
    VTodoSlotEmpty "vtodo.slot_empty" => "Refill it: it sells nothing until then.", "Пополните её: до этого она ничего не продаёт.";
    VAlertDispense "valert.dispense_failure" => "A vend from a slot did not drop:", "Товар из ячейки не выпал:";
    VTodoDispense "vtodo.dispense_failure" => "Open the door and look at the spiral (jam, product stuck, empty); nothing was charged. It clears at the next vend that drops.", "Откройте дверь и осмотрите спираль (заклинило, товар застрял, пусто); деньги не списаны. Снимется при следующей успешной выдаче.";
    VAlertPayment "valert.payment_device" => "The card reader failed during a vend.", "Картридер дал сбой во время продажи.";
    VTodoPayment "vtodo.payment_device" => "Check the reader's cable and power, and its link to the payment provider; it clears at the next paid vend.", "Проверьте кабель и питание картридера и его связь с платёжным провайдером; снимется при следующей оплаченной продаже.";
    VAlertExactChange "valert.exact_change" => "The coin tubes cannot give change for every coin, note and price: the machine asks for exact change.", "В монетных трубках не хватает монет на сдачу: автомат просит оплату без сдачи.";
    VTodoExactChange "vtodo.exact_change" => "Fill the coin tubes (the smaller coins first).", "Заполните монетные трубки (сначала мелкими монетами).";
    VAlertCashBox "valert.cash_box" => "The cash box is nearly full or out of position.", "Кассета купюр почти заполнена или не на месте.";
    VTodoCashBox "vtodo.cash_box" => "Empty the cash box and put it back until it clicks.", "Опустошите кассету и вставьте её на место до щелчка.";
    VAlertChanger "valert.changer_fault" => "The coin changer reports a fault.", "Монетоприёмник сообщает о неисправности.";
    VTodoChanger "vtodo.changer_fault" => "Clear a coin or tube jam, check the acceptor's plug; it clears when it takes a coin again.", "Устраните застревание монеты или трубки, проверьте разъём; снимется, когда он снова примет монету.";
    VAlertValidator "valert.validator_fault" => "The bill validator reports a fault.", "Купюроприёмник сообщает о неисправности.";
    VTodoValidator "vtodo.validator_fault" => "Clear a note jam and clean the sensors; it clears when it stacks a note again.", "Устраните застревание купюры и почистите датчики; снимется, когда он снова примет купюру.";
    ClearTemperature "vending.clear_temperature" => "Clear: the compartment is cold again", "Сбросить: в отсеке снова холодно";
    ClearRefused "vending.clear_refused" => "The temperature alert cannot be cleared now.", "Предупреждение о температуре сейчас нельзя сбросить.";
    DoneTemperatureCleared "done.temperature_cleared" => "Temperature alert cleared: chilled slots sell again.", "Предупреждение о температуре сброшено: охлаждаемые ячейки снова продают.";
    Slots "slots" => "Slots", "Ячейки";
    NoSlots "slots.none" => "No slots are set up: HQ sends them with the planogram, or a technician sets them through the API.", "Ячейки не настроены: их присылает центральный офис с планограммой или настраивает техник через программный интерфейс.";
    Slot "slot" => "Slot", "Ячейка";
    CountOfCapacity "count_of_capacity" => "Count / capacity", "Количество / вместимость";
    Par "par" => "Refill level", "Уровень пополнения";
    Climate "climate" => "Storage", "Хранение";
    ClimateAmbient "climate.ambient" => "Room temperature", "Комнатная температура";
    ClimateChilled "climate.chilled" => "Chilled", "Охлаждение";
    SlotOk "slot.ok" => "Sells", "Продаёт";
    SlotLow "slot.low" => "Low: refill soon", "Мало: скоро пополнить";
    SlotEmpty "slot.empty" => "Empty", "Пусто";
    SlotNeedsCount "slot.needs_count" => "Product changed: count it before it sells", "Товар сменился: пересчитайте перед продажей";
    SlotTooWarm "slot.too_warm" => "Not selling: too warm", "Не продаёт: слишком тепло";
    Cash "cash" => "Cash", "Наличные";
    Credit "credit" => "Customer's credit", "Кредит покупателя";
    NoteInEscrow "escrow" => "Note held in escrow", "Купюра на удержании";
    HeldForVend "held" => "Held for a running vend", "Удержано для текущей продажи";
    ChangeDue "change_due" => "Change being paid", "Выплачивается сдача";
    Yes "yes" => "Yes", "Да";
    No "no" => "No", "Нет";
    CoinTubes "tubes" => "Coin tubes", "Монетные трубки";
    Coin "coin" => "Coin", "Монета";
    Coins "coins" => "Coins", "Монет";
    Value "value" => "Value", "Сумма";
    TubeFull "tube.full" => "Full", "Полна";
    TubeEmpty "tube.empty" => "Empty", "Пуста";
    CashBox "cash_box" => "Cash box", "Кассета купюр";
    Notes "notes" => "Notes", "Купюр";
    CashBoxOut "cash_box.out" => "Out of position", "Не на месте";
    CashBoxFull "cash_box.full" => "Full", "Заполнена";
    CashBoxInPlace "cash_box.ok" => "In place", "На месте";
    BackToSecurity "back.security" => "Back to security and admin", "Назад к безопасности и администрированию";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_every_message_has_both_languages() {
        let mut ids = std::collections::HashSet::new();
        for m in Msg::ALL {
            assert!(ids.insert(m.id()), "duplicate id {}", m.id());
            assert_eq!(Msg::lookup(m.id()), Some(*m));
            assert!(!m.text(Lang::En).is_empty());
            let ru = m.text(Lang::Ru);
            assert!(!ru.is_empty());
            assert_ne!(ru, m.text(Lang::En), "{} is not translated", m.id());
        }
    }

    /// The Russian catalogue holds no English word (`UTC` is the zone's name in both).
    #[test]
    fn russian_has_no_latin_words() {
        for m in Msg::ALL {
            let ru = m.text(Lang::Ru);
            let latin = ru
                .split(|c: char| !c.is_ascii_alphabetic())
                .find(|w| w.len() >= 2 && *w != "UTC");
            assert!(latin.is_none(), "{}: {ru}", m.id());
        }
    }

    /// Every value of the enums the pages label has its entry, so no state shows up
    /// untranslated.
    #[test]
    fn every_enum_value_shown_has_an_entry() {
        use crate::console::snake;
        use outpost_peripherals::{DeviceKind, DeviceState, Health};
        for k in DeviceKind::ALL {
            assert!(
                Msg::lookup(&format!("kind.{}", snake(&k))).is_some(),
                "{k:?}"
            );
        }
        for s in [
            DeviceState::Closed,
            DeviceState::Idle,
            DeviceState::Busy,
            DeviceState::Error,
        ] {
            assert!(
                Msg::lookup(&format!("state.{}", snake(&s))).is_some(),
                "{s:?}"
            );
        }
        for h in [
            Health::Unknown,
            Health::Ok,
            Health::Degraded,
            Health::Failed,
        ] {
            assert!(
                Msg::lookup(&format!("health.{}", snake(&h))).is_some(),
                "{h:?}"
            );
        }
        for r in outpost_security::auth::roles::Role::ALL {
            assert!(
                Msg::lookup(&format!("role.{}", r.as_str())).is_some(),
                "{r:?}"
            );
        }
    }
}
