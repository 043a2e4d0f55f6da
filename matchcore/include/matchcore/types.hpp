// matchcore/types.hpp — units, codes and the fixed-size command/event records.
//
// Everything that crosses the boundary between the core and its callers is
// here: integer units (no floats anywhere in the core), the codes of
// docs/matchcore.md §2, and the Command/Event records whose layout is the
// numpy COMMAND_DTYPE/EVENT_DTYPE byte for byte (static_asserts below pin it).
#pragma once

#include <cstddef>
#include <cstdint>

namespace matchcore {

/// Price units per dollar; prices are YES prices in [tick, PRICE_SCALE - tick].
constexpr int32_t PRICE_SCALE = 10'000;
/// Largest order quantity (units of 0.01 share, i.e. 100 M shares).
constexpr int64_t MAX_QUANTITY = 10'000'000'000LL;
/// Largest order pool: MAX_ORDERS * MAX_QUANTITY < 2^63, so level totals never overflow.
constexpr uint32_t MAX_ORDERS = 1u << 29;
/// Upper bounds of the other capacities: far above any real venue, low
/// enough that a corrupted snapshot header cannot ask for absurd memory.
constexpr uint32_t MAX_MARKETS = 1u << 17;
constexpr uint32_t MAX_ACCOUNTS = 1u << 24;
constexpr uint32_t MAX_LEVELS = 1u << 27;
constexpr uint32_t MAX_POSITIONS = 1u << 29;
/// Largest net deposits: every balance, reservation and collateral stays below 2^62.
constexpr int64_t MAX_TOTAL_CASH = int64_t{1} << 62;
/// Fee rates are within +-1_000 basis points; taker rates are never negative.
constexpr int32_t FEE_BPS_LIMIT = 1'000;
/// Largest budget of a buy by cash (micro-dollars).
constexpr int64_t MAX_CASH = 10'000'000'000'000'000LL;
/// CANCEL_ALL target meaning every market.
constexpr uint32_t ALL_MARKETS = 0xFFFF'FFFFu;
/// Null slot index (order pool, level lists).
constexpr uint32_t NIL = 0xFFFF'FFFFu;
/// Price levels per side at the finest tick (1): prices 1..9999.
constexpr uint32_t MAX_LEVELS_PER_SIDE = 9'999;

enum Intent : uint8_t { BUY_YES = 0, SELL_YES = 1, BUY_NO = 2, SELL_NO = 3 };
enum Side : uint8_t { BID = 0, ASK = 1 };
enum TimeInForce : uint8_t { GTC = 0, GTD = 1, IOC = 2, FOK = 3 };
/// Self-trade prevention. The first three act where the sweep meets the owner's
/// order; the venue's FIX modes (3..5) act before the first fill on every owner's
/// order the limit reaches (docs/matchcore.md §4, the sweep).
enum Stp : uint8_t {
  REJECT_AGGRESSOR = 0,
  CANCEL_RESTING = 1,
  CANCEL_BOTH = 2,
  CANCEL_NEWEST = 3,
  CANCEL_OLDEST = 4,
  REMOVE_BOTH = 5,
};
/// SLIPPAGE: a market order whose limit the engine derives (the venue's slippage
/// tolerance, docs/matchcore.md §4): aux = ticks | bps << 32 | current price << 48.
enum OrderFlags : uint8_t { POST_ONLY = 1, MARKET_ORDER = 2, BY_CASH = 4, SLIPPAGE = 8 };
constexpr uint8_t KNOWN_FLAGS = POST_ONLY | MARKET_ORDER | BY_CASH | SLIPPAGE;
enum MatchType : uint8_t { MATCH_NONE = 0, COMPLEMENTARY = 1, MINT = 2, MERGE = 3 };
/// The venue's states (docs/matchcore.md §4, Markets): SUSPENDED takes cancels only
/// (code 3, the HALTED of format 4 and before), HALTED nothing; PRE_OPEN collects
/// orders for the opening auction; CLOSED and EXPIRED end trading.
enum MarketState : uint8_t {
  STATE_NONE = 0,
  PRE_OPEN = 1,
  OPEN = 2,
  SUSPENDED = 3,
  CLOSED = 4,
  RESOLVED = 5,
  HALTED = 6,
  EXPIRED = 7,
};
/// States in which orders may rest.
inline constexpr bool holds_orders(uint8_t state) noexcept {
  return state == PRE_OPEN || state == OPEN || state == SUSPENDED || state == HALTED;
}

enum CommandType : uint8_t {
  CMD_NEW_ORDER = 1,
  CMD_CANCEL = 2,
  CMD_CANCEL_CLIENT = 3,
  CMD_CANCEL_ALL = 4,
  CMD_REPLACE = 5,
  CMD_ADVANCE_TIME = 6,
  CMD_CREATE_MARKET = 7,
  CMD_SET_MARKET_STATE = 8,
  CMD_SET_TICK = 9,
  CMD_ADD_ACCOUNT = 10,
  CMD_DEPOSIT = 11,
  CMD_WITHDRAW = 12,
  CMD_SPLIT = 13,
  CMD_MERGE = 14,
  CMD_RESOLVE = 15,
};

enum EventType : uint8_t {
  EV_ACCEPTED = 1,
  EV_REJECTED = 2,
  EV_TRADE = 3,
  EV_CANCELED = 4,
  EV_REPLACED = 5,
  EV_LEVEL = 6,
  EV_MARKET = 7,
  EV_ACCOUNT = 8,
  EV_BALANCE = 9,
  EV_POSITION = 10,
  EV_SETTLEMENT = 11,
};

/// Why a command was rejected. Per-call results are -Reject on a reject.
enum Reject : uint8_t {
  R_NONE = 0,
  R_INVALID_COMMAND = 1,
  R_INVALID_PRICE = 2,
  R_INVALID_QUANTITY = 3,
  R_BELOW_MIN_SIZE = 4,
  R_DUPLICATE_CLIENT_ORDER_ID = 5,
  R_INSUFFICIENT_BALANCE = 6,
  R_INVALID_EXPIRY = 7,
  R_FOK_NOT_FILLED = 8,
  R_POST_ONLY_WOULD_CROSS = 9,
  R_MARKET_NOT_OPEN = 10,
  R_UNKNOWN_MARKET = 11,
  R_UNKNOWN_ACCOUNT = 12,
  R_UNKNOWN_ORDER = 13,
  R_NOT_OWNER = 14,
  R_CAPACITY = 15,
  R_INVALID_ORDER = 16,
  R_INVALID_TICK = 17,
  R_INVALID_STATE_TRANSITION = 18,
  R_MARKET_EXISTS = 19,
  R_ACCOUNT_EXISTS = 20,
  R_INVALID_FEE = 21,
  R_INVALID_OUTCOME = 22,
  R_LEDGER_DISABLED = 23,
  R_NOT_IN_AUCTION = 24,  ///< IOC, FOK, market or post-only order in PRE_OPEN
  R_NO_LIQUIDITY = 25,    ///< a SLIPPAGE market order that would fill nothing
};

/// FEE_PQ_CENTS is the venue's schedule (Polymarket US): the PQ base with each
/// fill rounded to the cent half to even and a taker's fills capped together.
enum FeeBase : uint8_t { FEE_NOTIONAL = 0, FEE_MIN = 1, FEE_PQ = 2, FEE_PQ_CENTS = 3 };
enum Outcome : uint8_t { OUTCOME_NONE = 0, OUTCOME_YES = 1, OUTCOME_NO = 2, OUTCOME_HALF = 3 };

enum CancelReason : uint8_t {
  C_USER = 1,
  C_UNFILLED = 2,
  C_SELF_TRADE = 3,
  C_EXPIRED = 4,
  C_MARKET_CLOSED = 5,
  C_TICK_CHANGE = 6,
};

/// One command; the layout of matchcore.COMMAND_DTYPE (docs/matchcore.md §3).
struct Command {
  uint64_t seq;
  int64_t time;
  uint64_t order_id;
  uint64_t client_order_id;
  int64_t quantity;  ///< qty units; cash micros for BY_CASH; CREATE_MARKET: min size
  int64_t expiry;    ///< GTD expiry time; CREATE_MARKET: price bounds, low | high << 32
  int64_t aux;       ///< CREATE_MARKET: lot
  uint32_t account;
  uint32_t market;
  int32_t price;  ///< limit / worst price; CREATE_MARKET, SET_TICK: tick
  uint8_t type;
  uint8_t intent;
  uint8_t tif;
  uint8_t stp;
  uint8_t flags;
  uint8_t arg;  ///< SET_MARKET_STATE: new state; RESOLVE: outcome
  int16_t taker_fee_bps;
  int16_t maker_fee_bps;
  uint8_t fee_base;
  uint8_t pad;
};
static_assert(sizeof(Command) == 80, "Command must match COMMAND_DTYPE");
static_assert(offsetof(Command, account) == 56 && offsetof(Command, type) == 68);
/// What the core's loads of a command's 8-byte fields need (COMMAND_DTYPE is packed,
/// so numpy calls an array of it aligned wherever it starts).
inline constexpr size_t COMMAND_ALIGNMENT = alignof(Command);

/// One event; the layout of matchcore.EVENT_DTYPE. Unused fields are zero.
struct Event {
  uint64_t seq;
  uint64_t order_id;
  uint64_t maker_order_id;
  int64_t quantity;
  int64_t leaves_qty;
  int64_t maker_leaves_qty;
  int64_t fee;
  int64_t maker_fee;
  uint32_t account;
  uint32_t maker_account;
  uint32_t market;
  int32_t price;
  uint32_t count;
  uint8_t type;
  uint8_t reason;
  uint8_t intent;
  uint8_t maker_intent;
  uint8_t match_type;
  uint8_t side;
  uint8_t tif;
  uint8_t flags;
  uint8_t command;
  uint8_t state;
  uint16_t pad;
};
static_assert(sizeof(Event) == 96, "Event must match EVENT_DTYPE");
static_assert(offsetof(Event, count) == 80 && offsetof(Event, type) == 84);

inline constexpr Side side_of(uint8_t intent) noexcept {
  return (intent == BUY_YES || intent == SELL_NO) ? BID : ASK;
}

/// Price of the token an intent trades at YES price p: p for YES, 1 - p for NO.
inline constexpr int64_t token_price(uint8_t intent, int32_t price) noexcept {
  return (intent == BUY_YES || intent == SELL_YES) ? price : PRICE_SCALE - price;
}

inline constexpr MatchType match_type(uint8_t bid_intent, uint8_t ask_intent) noexcept {
  if (bid_intent == BUY_YES) return ask_intent == SELL_YES ? COMPLEMENTARY : MINT;
  return ask_intent == BUY_NO ? COMPLEMENTARY : MERGE;  // bid is SELL_NO
}

/// The ticks: $0.0001, $0.001, $0.0025, $0.005, $0.01, $0.1 (each divides PRICE_SCALE).
inline constexpr bool valid_tick(int32_t tick) noexcept {
  return tick == 1 || tick == 10 || tick == 25 || tick == 50 || tick == 100 || tick == 1000;
}

/// price / tick for a valid tick. A division by a variable costs tens of
/// cycles; by a constant the compiler multiplies, and the branch on a market's
/// tick is always predicted.
inline constexpr int32_t divide_by_tick(int32_t price, int32_t tick) noexcept {
  switch (tick) {
    case 1:
      return price;
    case 10:
      return price / 10;
    case 25:
      return price / 25;
    case 50:
      return price / 50;
    case 100:
      return price / 100;
    default:
      return price / 1000;
  }
}

}  // namespace matchcore
