%% HPACK (RFC 7541) for the gRPC client: a full decoder (static and dynamic
%% tables, Huffman, every literal form, table size updates) and a minimal
%% encoder that never indexes, so the peer's decoder state never matters.
%% Because the encoder never uses the dynamic table, the peer's
%% SETTINGS_HEADER_TABLE_SIZE (the most it lets our encoder use) needs no
%% action, whatever its value, 0 included.
-module(consult_hpack).

-export([new/0, new/1, decode/2, decode/3, encode/1, encode_int/3, decode_int/2, table/1]).
-export_type([decoder/0]).

-define(DEFAULT_TABLE_SIZE, 4096).
%% Guards against absurd integers from a broken or hostile peer.
-define(MAX_INT, 16#7fffffff).

-record(decoder, {
    entries = [] :: [{binary(), binary()}],  %% newest first
    size = 0 :: non_neg_integer(),           %% RFC 7541 4.1 size
    max = ?DEFAULT_TABLE_SIZE :: non_neg_integer(),
    %% SETTINGS_HEADER_TABLE_SIZE we advertised: the ceiling for size updates
    limit = ?DEFAULT_TABLE_SIZE :: non_neg_integer()
}).
-opaque decoder() :: #decoder{}.

%% The dynamic table, newest entry first, its size and maximum size (for tests).
-spec table(decoder()) -> {[{binary(), binary()}], non_neg_integer(), non_neg_integer()}.
table(#decoder{entries = Entries, size = Size, max = Max}) -> {Entries, Size, Max}.

-spec new() -> decoder().
new() -> new(?DEFAULT_TABLE_SIZE).

-spec new(non_neg_integer()) -> decoder().
new(Limit) -> #decoder{max = Limit, limit = Limit}.

%% Decodes one complete header block. Every block must go through here, even
%% unwanted ones, or the dynamic table drifts out of sync with the peer.
-spec decode(binary(), decoder()) ->
          {ok, [{binary(), binary()}], decoder()} | {error, term()}.
decode(Block, D) ->
    decode(Block, D, infinity).

%% MaxListSize: the most the decoded list may weigh (RFC 7540 6.5.2, name +
%% value + 32 per field). A few bytes of indexes can name kilobytes each, so
%% this is checked as the list grows; past it the block is an error (and the
%% table out of sync: the connection has to go).
-spec decode(binary(), decoder(), non_neg_integer() | infinity) ->
          {ok, [{binary(), binary()}], decoder()} | {error, term()}.
decode(Block, D, MaxListSize) ->
    try decode_fields(Block, D, [], MaxListSize) of
        {Headers, D1} -> {ok, Headers, D1}
    catch
        throw:{hpack, Reason} -> {error, Reason}
    end.

decode_fields(<<>>, D, Acc, _Room) ->
    {lists:reverse(Acc), D};
decode_fields(<<1:1, _/bitstring>> = Bin, D, Acc, Room) ->
    %% Indexed header field.
    {Index, Rest} = decode_int(Bin, 7),
    Field = lookup(Index, D),
    decode_fields(Rest, D, [Field | Acc], take(Field, Room));
decode_fields(<<2#01:2, _/bitstring>> = Bin, D, Acc, Room) ->
    %% Literal with incremental indexing.
    {Field, Rest} = literal(Bin, 6, D),
    decode_fields(Rest, insert(Field, D), [Field | Acc], take(Field, Room));
decode_fields(<<2#001:3, _/bitstring>> = Bin, D, [], Room) ->
    %% Dynamic table size update: only at the start of a block (4.2).
    {Max, Rest} = decode_int(Bin, 5),
    Max =< D#decoder.limit orelse throw({hpack, {table_size_too_large, Max}}),
    decode_fields(Rest, evict(D#decoder{max = Max}), [], Room);
decode_fields(<<2#001:3, _/bitstring>>, _D, _Acc, _Room) ->
    throw({hpack, table_size_update_after_field});
decode_fields(Bin, D, Acc, Room) ->
    %% Literal without indexing (0000) or never indexed (0001): same layout.
    {Field, Rest} = literal(Bin, 4, D),
    decode_fields(Rest, D, [Field | Acc], take(Field, Room)).

take(_Field, infinity) -> infinity;
take({Name, Value}, Room) ->
    case Room - entry_size(Name, Value) of
        Left when Left >= 0 -> Left;
        _ -> throw({hpack, header_list_too_large})
    end.

literal(Bin, Prefix, D) ->
    case decode_int(Bin, Prefix) of
        {0, Rest} ->
            {Name, Rest1} = string(Rest),
            {Value, Rest2} = string(Rest1),
            {{Name, Value}, Rest2};
        {Index, Rest} ->
            {Name, _} = lookup(Index, D),
            {Value, Rest1} = string(Rest),
            {{Name, Value}, Rest1}
    end.

string(<<Huffman:1, _/bitstring>> = Bin) ->
    {Len, Rest} = decode_int(Bin, 7),
    case Rest of
        <<Str:Len/binary, Rest1/binary>> when Huffman =:= 1 ->
            {huffman_decode(Str, []), Rest1};
        <<Str:Len/binary, Rest1/binary>> ->
            {Str, Rest1};
        _ ->
            throw({hpack, truncated_string})
    end;
string(_) ->
    throw({hpack, truncated_string}).

lookup(Index, #decoder{entries = Entries}) ->
    case static_entry(Index) of
        undefined when Index > 61, Index - 61 =< length(Entries) ->
            lists:nth(Index - 61, Entries);
        undefined ->
            throw({hpack, {bad_index, Index}});
        Field ->
            Field
    end.

insert({Name, Value} = Field, D = #decoder{entries = Entries, size = Size}) ->
    %% An entry larger than the table empties it and is not kept (4.4).
    evict(D#decoder{entries = [Field | Entries], size = Size + entry_size(Name, Value)}).

evict(D = #decoder{size = Size, max = Max}) when Size =< Max ->
    D;
evict(D = #decoder{entries = Entries, size = Size}) ->
    {Name, Value} = lists:last(Entries),
    evict(D#decoder{entries = lists:droplast(Entries),
                    size = Size - entry_size(Name, Value)}).

entry_size(Name, Value) -> byte_size(Name) + byte_size(Value) + 32.

%% Integer with an N-bit prefix (5.1); the bits above the prefix are ignored.
-spec decode_int(binary(), 1..8) -> {non_neg_integer(), binary()}.
decode_int(Bin, N) ->
    Skip = 8 - N,
    Max = (1 bsl N) - 1,
    case Bin of
        <<_:Skip, I:N, Rest/binary>> when I < Max -> {I, Rest};
        <<_:Skip, _:N, Rest/binary>> -> decode_int_cont(Rest, Max, 0);
        _ -> throw({hpack, truncated_integer})
    end.

decode_int_cont(<<More:1, Bits:7, Rest/binary>>, I, Shift) ->
    I1 = I + (Bits bsl Shift),
    I1 =< ?MAX_INT orelse throw({hpack, integer_overflow}),
    case More of
        1 -> decode_int_cont(Rest, I1, Shift + 7);
        0 -> {I1, Rest}
    end;
decode_int_cont(_, _, _) ->
    throw({hpack, truncated_integer}).

%% Encodes I with an N-bit prefix; High holds the bits above the prefix.
-spec encode_int(non_neg_integer(), 1..8, non_neg_integer()) -> binary().
encode_int(I, N, High) ->
    Max = (1 bsl N) - 1,
    First = (High bsl N) band 16#ff,
    if
        I < Max -> <<(First bor I)>>;
        true -> encode_int_cont(I - Max, <<(First bor Max)>>)
    end.

encode_int_cont(I, Acc) when I < 128 -> <<Acc/binary, I>>;
encode_int_cont(I, Acc) -> encode_int_cont(I bsr 7, <<Acc/binary, (128 bor (I band 127))>>).

%% Every field as "literal without indexing, new name", raw strings.
-spec encode([{iodata(), iodata()}]) -> iodata().
encode(Headers) ->
    [[<<0>>, raw_string(Name), raw_string(Value)] || {Name, Value} <- Headers].

raw_string(S) ->
    Bin = iolist_to_binary(S),
    [encode_int(byte_size(Bin), 7, 0), Bin].

%% Padding is at most 7 bits, all ones (a prefix of EOS); anything else,
%% including a decoded EOS, is a decoding error (5.2).
huffman_decode(Bits, Acc) ->
    case huffman_symbol(Bits) of
        {Sym, Rest} ->
            huffman_decode(Rest, [Sym | Acc]);
        nomatch ->
            Pad = bit_size(Bits),
            Ones = (1 bsl Pad) - 1,
            case Bits of
                <<Ones:Pad>> when Pad < 8 -> list_to_binary(lists:reverse(Acc));
                _ -> throw({hpack, bad_huffman})
            end
    end.

-include("consult_hpack_huffman.hrl").
