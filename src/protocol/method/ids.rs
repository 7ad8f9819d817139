//! Every method's (class id, method id), named after the spec's `class.method`, and which
//! of them only a server sends.

use super::class::*;

/// A (class id, method id) pair.
pub type MethodId = (u16, u16);

pub const CONNECTION_START: MethodId = (CONNECTION, 10);
pub const CONNECTION_START_OK: MethodId = (CONNECTION, 11);
pub const CONNECTION_SECURE: MethodId = (CONNECTION, 20);
pub const CONNECTION_SECURE_OK: MethodId = (CONNECTION, 21);
pub const CONNECTION_TUNE: MethodId = (CONNECTION, 30);
pub const CONNECTION_TUNE_OK: MethodId = (CONNECTION, 31);
pub const CONNECTION_OPEN: MethodId = (CONNECTION, 40);
pub const CONNECTION_OPEN_OK: MethodId = (CONNECTION, 41);
pub const CONNECTION_CLOSE: MethodId = (CONNECTION, 50);
pub const CONNECTION_CLOSE_OK: MethodId = (CONNECTION, 51);
pub const CONNECTION_BLOCKED: MethodId = (CONNECTION, 60);
pub const CONNECTION_UNBLOCKED: MethodId = (CONNECTION, 61);
pub const CONNECTION_UPDATE_SECRET: MethodId = (CONNECTION, 70);
pub const CONNECTION_UPDATE_SECRET_OK: MethodId = (CONNECTION, 71);
pub const ACCESS_REQUEST: MethodId = (ACCESS, 10);
pub const ACCESS_REQUEST_OK: MethodId = (ACCESS, 11);
pub const CHANNEL_OPEN: MethodId = (CHANNEL, 10);
pub const CHANNEL_OPEN_OK: MethodId = (CHANNEL, 11);
pub const CHANNEL_FLOW: MethodId = (CHANNEL, 20);
pub const CHANNEL_FLOW_OK: MethodId = (CHANNEL, 21);
pub const CHANNEL_CLOSE: MethodId = (CHANNEL, 40);
pub const CHANNEL_CLOSE_OK: MethodId = (CHANNEL, 41);
pub const EXCHANGE_DECLARE: MethodId = (EXCHANGE, 10);
pub const EXCHANGE_DECLARE_OK: MethodId = (EXCHANGE, 11);
pub const EXCHANGE_DELETE: MethodId = (EXCHANGE, 20);
pub const EXCHANGE_DELETE_OK: MethodId = (EXCHANGE, 21);
pub const EXCHANGE_BIND: MethodId = (EXCHANGE, 30);
pub const EXCHANGE_BIND_OK: MethodId = (EXCHANGE, 31);
pub const EXCHANGE_UNBIND: MethodId = (EXCHANGE, 40);
pub const EXCHANGE_UNBIND_OK: MethodId = (EXCHANGE, 51);
pub const QUEUE_DECLARE: MethodId = (QUEUE, 10);
pub const QUEUE_DECLARE_OK: MethodId = (QUEUE, 11);
pub const QUEUE_BIND: MethodId = (QUEUE, 20);
pub const QUEUE_BIND_OK: MethodId = (QUEUE, 21);
pub const QUEUE_PURGE: MethodId = (QUEUE, 30);
pub const QUEUE_PURGE_OK: MethodId = (QUEUE, 31);
pub const QUEUE_DELETE: MethodId = (QUEUE, 40);
pub const QUEUE_DELETE_OK: MethodId = (QUEUE, 41);
pub const QUEUE_UNBIND: MethodId = (QUEUE, 50);
pub const QUEUE_UNBIND_OK: MethodId = (QUEUE, 51);
pub const BASIC_QOS: MethodId = (BASIC, 10);
pub const BASIC_QOS_OK: MethodId = (BASIC, 11);
pub const BASIC_CONSUME: MethodId = (BASIC, 20);
pub const BASIC_CONSUME_OK: MethodId = (BASIC, 21);
pub const BASIC_CANCEL: MethodId = (BASIC, 30);
pub const BASIC_CANCEL_OK: MethodId = (BASIC, 31);
pub const BASIC_PUBLISH: MethodId = (BASIC, 40);
pub const BASIC_RETURN: MethodId = (BASIC, 50);
pub const BASIC_DELIVER: MethodId = (BASIC, 60);
pub const BASIC_GET: MethodId = (BASIC, 70);
pub const BASIC_GET_OK: MethodId = (BASIC, 71);
pub const BASIC_GET_EMPTY: MethodId = (BASIC, 72);
pub const BASIC_ACK: MethodId = (BASIC, 80);
pub const BASIC_REJECT: MethodId = (BASIC, 90);
pub const BASIC_RECOVER_ASYNC: MethodId = (BASIC, 100);
pub const BASIC_RECOVER: MethodId = (BASIC, 110);
pub const BASIC_RECOVER_OK: MethodId = (BASIC, 111);
pub const BASIC_NACK: MethodId = (BASIC, 120);
pub const CONFIRM_SELECT: MethodId = (CONFIRM, 10);
pub const CONFIRM_SELECT_OK: MethodId = (CONFIRM, 11);
pub const TX_SELECT: MethodId = (TX, 10);
pub const TX_SELECT_OK: MethodId = (TX, 11);
pub const TX_COMMIT: MethodId = (TX, 20);
pub const TX_COMMIT_OK: MethodId = (TX, 21);
pub const TX_ROLLBACK: MethodId = (TX, 30);
pub const TX_ROLLBACK_OK: MethodId = (TX, 31);

/// Methods only a server sends. A client sending one is answered as RabbitMQ does
/// (503 on a channel, 504 on channel 0), not dropped as an unknown id.
pub const SERVER_ONLY: [MethodId; 30] = [
    CONNECTION_START,
    CONNECTION_SECURE,
    CONNECTION_TUNE,
    CONNECTION_OPEN_OK,
    CONNECTION_BLOCKED,
    CONNECTION_UNBLOCKED,
    CONNECTION_UPDATE_SECRET_OK,
    CHANNEL_OPEN_OK,
    ACCESS_REQUEST_OK,
    EXCHANGE_DECLARE_OK,
    EXCHANGE_DELETE_OK,
    EXCHANGE_BIND_OK,
    EXCHANGE_UNBIND_OK,
    QUEUE_DECLARE_OK,
    QUEUE_BIND_OK,
    QUEUE_PURGE_OK,
    QUEUE_DELETE_OK,
    QUEUE_UNBIND_OK,
    BASIC_QOS_OK,
    BASIC_CONSUME_OK,
    BASIC_CANCEL_OK,
    BASIC_RETURN,
    BASIC_DELIVER,
    BASIC_GET_OK,
    BASIC_GET_EMPTY,
    BASIC_RECOVER_OK,
    CONFIRM_SELECT_OK,
    TX_SELECT_OK,
    TX_COMMIT_OK,
    TX_ROLLBACK_OK,
];
/// The server-only methods that carry content (a header and body frames follow).
pub const SERVER_CONTENT: [MethodId; 3] = [BASIC_RETURN, BASIC_DELIVER, BASIC_GET_OK];
