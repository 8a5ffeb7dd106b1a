// MySQL client/server protocol constants, named as the specification names them.
// https://dev.mysql.com/doc/dev/mysql-server/latest/PAGE_PROTOCOL.html

/** Capability flags. https://dev.mysql.com/doc/dev/mysql-server/latest/group__group__cs__capabilities__flags.html */
export const Capability = {
  CLIENT_LONG_PASSWORD: 1 << 0, // MariaDB reads this bit as CLIENT_MYSQL
  CLIENT_FOUND_ROWS: 1 << 1,
  CLIENT_LONG_FLAG: 1 << 2,
  CLIENT_CONNECT_WITH_DB: 1 << 3,
  CLIENT_NO_SCHEMA: 1 << 4,
  CLIENT_COMPRESS: 1 << 5,
  CLIENT_ODBC: 1 << 6,
  CLIENT_LOCAL_FILES: 1 << 7,
  CLIENT_IGNORE_SPACE: 1 << 8,
  CLIENT_PROTOCOL_41: 1 << 9,
  CLIENT_INTERACTIVE: 1 << 10,
  CLIENT_SSL: 1 << 11,
  CLIENT_IGNORE_SIGPIPE: 1 << 12,
  CLIENT_TRANSACTIONS: 1 << 13,
  CLIENT_RESERVED: 1 << 14,
  CLIENT_SECURE_CONNECTION: 1 << 15,
  CLIENT_MULTI_STATEMENTS: 1 << 16,
  CLIENT_MULTI_RESULTS: 1 << 17,
  CLIENT_PS_MULTI_RESULTS: 1 << 18,
  CLIENT_PLUGIN_AUTH: 1 << 19,
  CLIENT_CONNECT_ATTRS: 1 << 20,
  CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA: 1 << 21,
  CLIENT_CAN_HANDLE_EXPIRED_PASSWORDS: 1 << 22,
  CLIENT_SESSION_TRACK: 1 << 23,
  CLIENT_DEPRECATE_EOF: 1 << 24,
  CLIENT_OPTIONAL_RESULTSET_METADATA: 1 << 25,
  CLIENT_ZSTD_COMPRESSION_ALGORITHM: 1 << 26,
  CLIENT_QUERY_ATTRIBUTES: 1 << 27,
  CLIENT_MULTI_FACTOR_AUTHENTICATION: 1 << 28,
  CLIENT_CAPABILITY_EXTENSION: 1 << 29,
  CLIENT_SSL_VERIFY_SERVER_CERT: 1 << 30,
  CLIENT_REMEMBER_OPTIONS: 2 ** 31,
} as const;

/**
 * MariaDB's extended capabilities: the upper 32 bits of its 64-bit capability set, carried in the
 * last 4 reserved bytes of the greeting and of the HandshakeResponse, and only when the sender
 * clears CLIENT_LONG_PASSWORD (which MariaDB reads as CLIENT_MYSQL, "I am MySQL").
 * https://mariadb.com/kb/en/connection/#capabilities
 */
export const MariaDbCapability = {
  MARIADB_CLIENT_PROGRESS: 1 << 0,
  MARIADB_CLIENT_COM_MULTI: 1 << 1,
  MARIADB_CLIENT_STMT_BULK_OPERATIONS: 1 << 2,
  MARIADB_CLIENT_EXTENDED_METADATA: 1 << 3,
  MARIADB_CLIENT_CACHE_METADATA: 1 << 4,
  MARIADB_CLIENT_BULK_UNIT_RESULTS: 1 << 5,
} as const;

/** Command bytes (first payload byte of a command-phase packet from the client). */
export const Command = {
  COM_SLEEP: 0x00,
  COM_QUIT: 0x01,
  COM_INIT_DB: 0x02,
  COM_QUERY: 0x03,
  COM_FIELD_LIST: 0x04,
  COM_STATISTICS: 0x09,
  COM_PROCESS_KILL: 0x0c,
  COM_PING: 0x0e,
  COM_CHANGE_USER: 0x11,
  COM_BINLOG_DUMP: 0x12,
  COM_STMT_PREPARE: 0x16,
  COM_STMT_EXECUTE: 0x17,
  COM_STMT_SEND_LONG_DATA: 0x18,
  COM_STMT_CLOSE: 0x19,
  COM_STMT_RESET: 0x1a,
  COM_SET_OPTION: 0x1b,
  COM_STMT_FETCH: 0x1c,
  COM_BINLOG_DUMP_GTID: 0x1e,
  COM_RESET_CONNECTION: 0x1f,
  COM_STMT_BULK_EXECUTE: 0xfa,
} as const;

/** Server status flags. */
export const ServerStatus = {
  SERVER_STATUS_IN_TRANS: 0x0001,
  SERVER_STATUS_AUTOCOMMIT: 0x0002,
  SERVER_MORE_RESULTS_EXISTS: 0x0008,
  SERVER_QUERY_NO_GOOD_INDEX_USED: 0x0010,
  SERVER_QUERY_NO_INDEX_USED: 0x0020,
  SERVER_STATUS_CURSOR_EXISTS: 0x0040,
  SERVER_STATUS_LAST_ROW_SENT: 0x0080,
  SERVER_QUERY_WAS_SLOW: 0x0800,
  SERVER_STATUS_IN_TRANS_READONLY: 0x2000,
  SERVER_SESSION_STATE_CHANGED: 0x4000,
} as const;

/** First payload byte of generic response packets. */
export const PacketHeader = {
  OK: 0x00,
  AUTH_MORE_DATA: 0x01,
  EOF: 0xfe, // also AuthSwitchRequest during authentication
  ERR: 0xff,
} as const;

/** utf8mb3_general_ci (0x21): what myproxy announces; the client's own choice is forwarded to the backend. */
export const DEFAULT_CHARSET = 0x21;

/** Largest payload of one physical packet; a payload of exactly this size is continued in the next packet. */
export const MAX_PACKET_PAYLOAD = 0xffffff;

export const AuthPluginName = {
  NATIVE_PASSWORD: 'mysql_native_password',
  CLEAR_PASSWORD: 'mysql_clear_password',
  CACHING_SHA2_PASSWORD: 'caching_sha2_password',
  ED25519: 'client_ed25519',
} as const;
