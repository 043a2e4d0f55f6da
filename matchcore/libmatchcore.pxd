# cython: language_level=3
"""Declarations of the C++ core (matchcore/include/matchcore/*.hpp) for Cython."""

from libc.stdint cimport (
    int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t,
)
from libcpp cimport bool
from libcpp.string cimport string


# ---------------------------------------------------------------- types.hpp

cdef extern from "matchcore/types.hpp" namespace "matchcore" nogil:
    const int32_t PRICE_SCALE
    const int64_t MAX_QUANTITY
    const int64_t MAX_CASH
    const uint32_t MAX_ORDERS
    const uint32_t MAX_MARKETS
    const uint32_t MAX_ACCOUNTS
    const uint32_t MAX_LEVELS
    const uint32_t MAX_POSITIONS
    const int64_t MAX_TOTAL_CASH
    const int32_t FEE_BPS_LIMIT
    const size_t COMMAND_ALIGNMENT
    const uint32_t ALL_MARKETS

    enum:
        BUY_YES, SELL_YES, BUY_NO, SELL_NO
        BID, ASK
        GTC, GTD, IOC, FOK
        REJECT_AGGRESSOR, CANCEL_RESTING, CANCEL_BOTH, CANCEL_NEWEST, CANCEL_OLDEST, REMOVE_BOTH
        POST_ONLY, MARKET_ORDER, BY_CASH, SLIPPAGE
        MATCH_NONE, COMPLEMENTARY, MINT, MERGE
        STATE_NONE, PRE_OPEN, OPEN, SUSPENDED, CLOSED, RESOLVED, HALTED, EXPIRED
        CMD_NEW_ORDER, CMD_CANCEL, CMD_CANCEL_CLIENT, CMD_CANCEL_ALL, CMD_REPLACE
        CMD_ADVANCE_TIME, CMD_CREATE_MARKET, CMD_SET_MARKET_STATE, CMD_SET_TICK
        CMD_ADD_ACCOUNT, CMD_DEPOSIT, CMD_WITHDRAW, CMD_SPLIT, CMD_MERGE, CMD_RESOLVE
        EV_ACCEPTED, EV_REJECTED, EV_TRADE, EV_CANCELED, EV_REPLACED, EV_LEVEL
        EV_MARKET, EV_ACCOUNT, EV_BALANCE, EV_POSITION, EV_SETTLEMENT
        R_INVALID_COMMAND, R_INVALID_PRICE, R_INVALID_QUANTITY, R_BELOW_MIN_SIZE
        R_DUPLICATE_CLIENT_ORDER_ID, R_INSUFFICIENT_BALANCE, R_INVALID_EXPIRY
        R_FOK_NOT_FILLED, R_POST_ONLY_WOULD_CROSS, R_MARKET_NOT_OPEN
        R_UNKNOWN_MARKET, R_UNKNOWN_ACCOUNT, R_UNKNOWN_ORDER, R_NOT_OWNER
        R_CAPACITY, R_INVALID_ORDER, R_INVALID_TICK, R_INVALID_STATE_TRANSITION
        R_MARKET_EXISTS, R_ACCOUNT_EXISTS, R_INVALID_FEE, R_INVALID_OUTCOME
        R_LEDGER_DISABLED, R_NOT_IN_AUCTION, R_NO_LIQUIDITY
        FEE_NOTIONAL, FEE_MIN, FEE_PQ, FEE_PQ_CENTS
        OUTCOME_NONE, OUTCOME_YES, OUTCOME_NO, OUTCOME_HALF
        C_USER, C_UNFILLED, C_SELF_TRADE, C_EXPIRED, C_MARKET_CLOSED, C_TICK_CHANGE

    cdef struct Command:
        uint64_t seq
        int64_t time
        uint64_t order_id
        uint64_t client_order_id
        int64_t quantity
        int64_t expiry
        int64_t aux
        uint32_t account
        uint32_t market
        int32_t price
        uint8_t type
        uint8_t intent
        uint8_t tif
        uint8_t stp
        uint8_t flags
        uint8_t arg
        int16_t taker_fee_bps
        int16_t maker_fee_bps
        uint8_t fee_base
        uint8_t pad

    cdef struct Event:
        uint64_t seq

    int side_of(uint8_t intent)


# ----------------------------------------------------------- order_pool.hpp

cdef extern from "matchcore/order_pool.hpp" namespace "matchcore" nogil:
    cdef struct Order:
        uint64_t order_id
        uint64_t client_order_id
        int64_t leaves_qty
        uint32_t account
        uint32_t market
        int32_t price
        uint8_t intent
        uint8_t tif
        uint8_t stp
        uint8_t flags


# --------------------------------------------------------------- ledger.hpp

cdef extern from "matchcore/ledger.hpp" namespace "matchcore" nogil:
    cdef struct FeeSchedule:
        int16_t taker_bps
        int16_t maker_bps
        uint8_t base

    cdef struct Position:
        int64_t yes_free
        int64_t yes_reserved
        int64_t no_free
        int64_t no_reserved


# --------------------------------------------------------------- engine.hpp

cdef extern from "matchcore/engine.hpp" namespace "matchcore" nogil:
    cdef cppclass Config:
        uint32_t max_orders
        uint32_t max_markets
        uint32_t max_accounts
        uint32_t max_levels
        uint32_t max_positions
        bool ledger

    cdef struct Account:
        int64_t cash_free
        int64_t cash_reserved
        uint32_t orders

    cdef struct Market:
        uint32_t id
        uint8_t state
        int32_t tick
        int64_t min_size
        int64_t lot
        int32_t best[2]
        FeeSchedule fees
        uint8_t outcome
        int64_t collateral
        int32_t min_price
        int32_t max_price

    cdef struct BookLevel:
        int32_t price
        uint32_t count
        int64_t quantity

    cdef struct MemoryStats:
        size_t order_slot
        size_t orders
        size_t slot_map
        size_t client_index
        size_t expiry_heap
        size_t levels
        size_t markets
        size_t accounts
        size_t positions

    const size_t EVENT_ALIGNMENT

    cdef cppclass EventBuffer:
        const Event* data()
        size_t size()
        void truncate(size_t size)
        void erase_front(size_t count)
        void attach(Event* region, size_t room)
        bool attached()
        void detach()

    cdef cppclass Engine:
        bool init(const Config& config, string& error) except +
        const Config& config()
        int64_t execute(const Command& command) except +
        void process(const Command* commands, size_t count) except +
        void process_timed(const Command* commands, size_t count, int64_t* nanoseconds) except +
        EventBuffer& events()
        int64_t now()
        uint64_t next_order_id()
        uint32_t order_count()
        int64_t next_expiry()
        const Market* market(uint32_t id)
        const Order* find_order(uint64_t order_id)
        const Account* account(uint32_t id)
        size_t orders_of(uint32_t account, const Order** out, size_t capacity)
        const Position* position(uint32_t account, uint32_t market)
        int64_t net_deposits()
        int64_t fees()
        int64_t expiry_of(const Order& o)
        size_t book_side(const Market& m, int side, size_t depth, BookLevel* out)
        MemoryStats memory()
        void encode_state(string& out) except +
        bool decode_state(const uint8_t* data, size_t size, string& error) except +
        bool validate(string& error) except +
