%% HTTP/2 frames (RFC 7540 section 4 and 6) for the gRPC client: a pure
%% parser that checks everything that can be checked on a single frame, and
%% encoders for the frames the client sends. Connection and stream state
%% (which stream may receive what, windows, CONTINUATION sequencing) is
%% consult_h2_machine's job.
%%
%% parse/2 returns one frame at a time. An error that concerns one stream
%% only comes back as a frame, {stream_error, Id, Code, Reason}, with the
%% input consumed; an error that breaks the connection as
%% {error, {connection_error, Code, Reason}}.
-module(consult_h2).

-export([parse/2, preface/0, frame/4, settings/1, settings_ack/0, ping/1, ping_ack/1,
         goaway/3, rst_stream/2, window_update/2, headers/4, data/3, error_code/1]).
-export_type([frame/0, error_code/0]).

-define(DEFAULT_MAX_FRAME, 16384).
-define(MAX_WINDOW, 16#7fffffff).

%% Frame types.
-define(DATA, 0).
-define(HEADERS, 1).
-define(PRIORITY, 2).
-define(RST_STREAM, 3).
-define(SETTINGS, 4).
-define(PUSH_PROMISE, 5).
-define(PING, 6).
-define(GOAWAY, 7).
-define(WINDOW_UPDATE, 8).
-define(CONTINUATION, 9).

%% Flags.
-define(END_STREAM, 16#1).
-define(ACK, 16#1).
-define(END_HEADERS, 16#4).
-define(PADDED, 16#8).
-define(PRIORITY_FLAG, 16#20).

-type error_code() :: no_error | protocol_error | internal_error | flow_control_error
                    | settings_timeout | stream_closed | frame_size_error | refused_stream
                    | cancel | compression_error | connect_error | enhance_your_calm
                    | inadequate_security | http_1_1_required | {unknown, non_neg_integer()}.

-type setting() :: header_table_size | enable_push | max_concurrent_streams
                 | initial_window_size | max_frame_size | max_header_list_size
                 | {unknown, non_neg_integer()}.

-type frame() :: {data, pos_integer(), EndStream :: boolean(), Data :: binary(),
                  FlowControlled :: non_neg_integer()}
               | {headers, pos_integer(), EndStream :: boolean(), EndHeaders :: boolean(),
                  Fragment :: binary()}
               | {priority, pos_integer()}
               | {rst_stream, pos_integer(), error_code()}
               | {settings, [{setting(), non_neg_integer()}]}
               | settings_ack
               | {ping, binary()}
               | {ping_ack, binary()}
               | {goaway, LastId :: non_neg_integer(), error_code(), Debug :: binary()}
               | {window_update, non_neg_integer(), pos_integer()}
               | {continuation, pos_integer(), EndHeaders :: boolean(), Fragment :: binary()}
               | {unknown, Type :: byte(), non_neg_integer()}
               | {stream_error, pos_integer(), error_code(), term()}.

%%% Parsing

%% MaxFrameSize: our SETTINGS_MAX_FRAME_SIZE; a longer frame is refused as
%% soon as its length is known (FRAME_SIZE_ERROR, RFC 7540 4.2).
-spec parse(binary(), pos_integer()) ->
          {ok, frame(), binary()} | more
        | {error, {connection_error, error_code(), term()}}.
parse(<<Len:24, _/binary>>, Max) when Len > Max ->
    {error, {connection_error, frame_size_error, {frame_too_large, Len}}};
parse(<<Len:24, Type:8, Flags:8, _:1, Id:31, Payload:Len/binary, Rest/binary>>, _Max) ->
    try frame_of(Type, Flags, Id, Payload) of
        Frame -> {ok, Frame, Rest}
    catch
        throw:{connection_error, Code, Reason} -> {error, {connection_error, Code, Reason}}
    end;
parse(_, _) ->
    more.

conn_error(Code, Reason) -> throw({connection_error, Code, Reason}).

%% DATA, HEADERS, PRIORITY, RST_STREAM, PUSH_PROMISE and CONTINUATION belong
%% to a stream; SETTINGS, PING and GOAWAY to the connection (6.x).
frame_of(Type, _, 0, _) when Type =:= ?DATA; Type =:= ?HEADERS; Type =:= ?PRIORITY;
                             Type =:= ?RST_STREAM; Type =:= ?PUSH_PROMISE;
                             Type =:= ?CONTINUATION ->
    conn_error(protocol_error, {stream_zero, type_name(Type)});
frame_of(Type, _, Id, _) when Id =/= 0, (Type =:= ?SETTINGS orelse Type =:= ?PING
                                         orelse Type =:= ?GOAWAY) ->
    conn_error(protocol_error, {not_stream_zero, type_name(Type)});
frame_of(?DATA, Flags, Id, Payload) ->
    Data = unpad(Flags, Payload),
    {data, Id, flag(Flags, ?END_STREAM), Data, byte_size(Payload)};
frame_of(?HEADERS, Flags, Id, Payload) ->
    Unpadded = unpad(Flags, Payload),
    case flag(Flags, ?PRIORITY_FLAG) of
        false ->
            {headers, Id, flag(Flags, ?END_STREAM), flag(Flags, ?END_HEADERS), Unpadded};
        true ->
            case Unpadded of
                <<_:1, Id:31, _Weight, _/binary>> ->
                    {stream_error, Id, protocol_error, depends_on_itself};
                <<_:1, _Dep:31, _Weight, Fragment/binary>> ->
                    {headers, Id, flag(Flags, ?END_STREAM), flag(Flags, ?END_HEADERS), Fragment};
                _ ->
                    conn_error(frame_size_error, short_headers)
            end
    end;
frame_of(?PRIORITY, _, Id, <<_:1, Id:31, _Weight>>) ->
    {stream_error, Id, protocol_error, depends_on_itself};
frame_of(?PRIORITY, _, Id, <<_:40>>) ->
    {priority, Id};
frame_of(?PRIORITY, _, Id, _) ->
    {stream_error, Id, frame_size_error, bad_priority_length};
frame_of(?RST_STREAM, _, Id, <<Code:32>>) ->
    {rst_stream, Id, error_name(Code)};
frame_of(?RST_STREAM, _, _, _) ->
    conn_error(frame_size_error, bad_rst_stream_length);
frame_of(?SETTINGS, Flags, 0, Payload) ->
    case {flag(Flags, ?ACK), Payload} of
        {true, <<>>} -> settings_ack;
        {true, _} -> conn_error(frame_size_error, settings_ack_with_payload);
        {false, _} when byte_size(Payload) rem 6 =/= 0 ->
            conn_error(frame_size_error, bad_settings_length);
        {false, _} -> {settings, [setting(K, V) || <<K:16, V:32>> <= Payload]}
    end;
frame_of(?PUSH_PROMISE, _, _, _) ->
    %% Refused in our SETTINGS (ENABLE_PUSH = 0): 8.2.
    conn_error(protocol_error, push_promise);
frame_of(?PING, Flags, 0, <<Opaque:8/binary>>) ->
    case flag(Flags, ?ACK) of
        true -> {ping_ack, Opaque};
        false -> {ping, Opaque}
    end;
frame_of(?PING, _, 0, _) ->
    conn_error(frame_size_error, bad_ping_length);
frame_of(?GOAWAY, _, 0, <<_:1, LastId:31, Code:32, Debug/binary>>) ->
    {goaway, LastId, error_name(Code), Debug};
frame_of(?GOAWAY, _, 0, _) ->
    conn_error(frame_size_error, short_goaway);
frame_of(?WINDOW_UPDATE, _, Id, <<_:1, Inc:31>>) ->
    %% An increment of 0 is a protocol error of what it applies to (6.9).
    case {Inc, Id} of
        {0, 0} -> conn_error(protocol_error, zero_window_increment);
        {0, _} -> {stream_error, Id, protocol_error, zero_window_increment};
        _ -> {window_update, Id, Inc}
    end;
frame_of(?WINDOW_UPDATE, _, _, _) ->
    conn_error(frame_size_error, bad_window_update_length);
frame_of(?CONTINUATION, Flags, Id, Payload) ->
    {continuation, Id, flag(Flags, ?END_HEADERS), Payload};
frame_of(Type, _, Id, _) ->
    %% Unknown types are ignored (4.1, 5.5).
    {unknown, Type, Id}.

%% Padding: a length byte, then that many bytes after the data. Padding as
%% long as the rest of the payload or longer is a PROTOCOL_ERROR (6.1, 6.2).
unpad(Flags, Payload) ->
    case flag(Flags, ?PADDED) of
        false -> Payload;
        true ->
            case Payload of
                <<PadLen, Rest/binary>> when PadLen =< byte_size(Rest) ->
                    binary:part(Rest, 0, byte_size(Rest) - PadLen);
                <<PadLen, _/binary>> ->
                    conn_error(protocol_error, {bad_padding, PadLen, byte_size(Payload)});
                <<>> ->
                    conn_error(frame_size_error, padded_without_length)
            end
    end.

%% Values outside their range are connection errors (6.5.2).
setting(1, V) -> {header_table_size, V};
setting(2, V) when V =:= 0; V =:= 1 -> {enable_push, V};
setting(2, V) -> conn_error(protocol_error, {bad_enable_push, V});
setting(3, V) -> {max_concurrent_streams, V};
setting(4, V) when V =< ?MAX_WINDOW -> {initial_window_size, V};
setting(4, V) -> conn_error(flow_control_error, {bad_initial_window_size, V});
setting(5, V) when V >= ?DEFAULT_MAX_FRAME, V =< 16#ffffff -> {max_frame_size, V};
setting(5, V) -> conn_error(protocol_error, {bad_max_frame_size, V});
setting(6, V) -> {max_header_list_size, V};
setting(K, V) -> {{unknown, K}, V}.

flag(Flags, Bit) -> Flags band Bit =/= 0.

type_name(?DATA) -> data;
type_name(?HEADERS) -> headers;
type_name(?PRIORITY) -> priority;
type_name(?RST_STREAM) -> rst_stream;
type_name(?SETTINGS) -> settings;
type_name(?PUSH_PROMISE) -> push_promise;
type_name(?PING) -> ping;
type_name(?GOAWAY) -> goaway;
type_name(?CONTINUATION) -> continuation.

%%% Encoding

-spec preface() -> binary().
preface() -> <<"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n">>.

-spec frame(byte(), byte(), non_neg_integer(), iodata()) -> iodata().
frame(Type, Flags, StreamId, Payload) ->
    [<<(iolist_size(Payload)):24, Type:8, Flags:8, 0:1, StreamId:31>>, Payload].

-spec settings([{setting(), non_neg_integer()}]) -> iodata().
settings(Settings) ->
    frame(?SETTINGS, 0, 0, [<<(setting_key(K)):16, V:32>> || {K, V} <- Settings]).

-spec settings_ack() -> iodata().
settings_ack() -> frame(?SETTINGS, ?ACK, 0, <<>>).

-spec ping(<<_:64>>) -> iodata().
ping(Opaque) -> frame(?PING, 0, 0, Opaque).

-spec ping_ack(<<_:64>>) -> iodata().
ping_ack(Opaque) -> frame(?PING, ?ACK, 0, Opaque).

-spec goaway(non_neg_integer(), error_code(), iodata()) -> iodata().
goaway(LastId, Code, Debug) ->
    frame(?GOAWAY, 0, 0, [<<0:1, LastId:31, (error_code(Code)):32>>, Debug]).

-spec rst_stream(pos_integer(), error_code()) -> iodata().
rst_stream(Id, Code) -> frame(?RST_STREAM, 0, Id, <<(error_code(Code)):32>>).

-spec window_update(non_neg_integer(), 1..16#7fffffff) -> iodata().
window_update(Id, Inc) -> frame(?WINDOW_UPDATE, 0, Id, <<0:1, Inc:31>>).

%% A header block in one HEADERS frame, or split into CONTINUATION frames
%% when it is longer than the peer's SETTINGS_MAX_FRAME_SIZE.
-spec headers(pos_integer(), iodata(), boolean(), pos_integer()) -> iodata().
headers(Id, Block, EndStream, MaxFrame) ->
    ES = case EndStream of true -> ?END_STREAM; false -> 0 end,
    case iolist_to_binary(Block) of
        Bin when byte_size(Bin) =< MaxFrame ->
            frame(?HEADERS, ES bor ?END_HEADERS, Id, Bin);
        <<First:MaxFrame/binary, Rest/binary>> ->
            [frame(?HEADERS, ES, Id, First) | continuations(Id, Rest, MaxFrame)]
    end.

continuations(Id, Bin, MaxFrame) when byte_size(Bin) =< MaxFrame ->
    [frame(?CONTINUATION, ?END_HEADERS, Id, Bin)];
continuations(Id, Bin, MaxFrame) ->
    <<Part:MaxFrame/binary, Rest/binary>> = Bin,
    [frame(?CONTINUATION, 0, Id, Part) | continuations(Id, Rest, MaxFrame)].

-spec data(pos_integer(), iodata(), boolean()) -> iodata().
data(Id, Data, EndStream) ->
    frame(?DATA, case EndStream of true -> ?END_STREAM; false -> 0 end, Id, Data).

setting_key(header_table_size) -> 1;
setting_key(enable_push) -> 2;
setting_key(max_concurrent_streams) -> 3;
setting_key(initial_window_size) -> 4;
setting_key(max_frame_size) -> 5;
setting_key(max_header_list_size) -> 6.

%% Error codes (7).
-spec error_code(error_code()) -> non_neg_integer().
error_code(no_error) -> 0;
error_code(protocol_error) -> 1;
error_code(internal_error) -> 2;
error_code(flow_control_error) -> 3;
error_code(settings_timeout) -> 4;
error_code(stream_closed) -> 5;
error_code(frame_size_error) -> 6;
error_code(refused_stream) -> 7;
error_code(cancel) -> 8;
error_code(compression_error) -> 9;
error_code(connect_error) -> 10;
error_code(enhance_your_calm) -> 11;
error_code(inadequate_security) -> 12;
error_code(http_1_1_required) -> 13;
error_code({unknown, N}) -> N.

error_name(0) -> no_error;
error_name(1) -> protocol_error;
error_name(2) -> internal_error;
error_name(3) -> flow_control_error;
error_name(4) -> settings_timeout;
error_name(5) -> stream_closed;
error_name(6) -> frame_size_error;
error_name(7) -> refused_stream;
error_name(8) -> cancel;
error_name(9) -> compression_error;
error_name(10) -> connect_error;
error_name(11) -> enhance_your_calm;
error_name(12) -> inadequate_security;
error_name(13) -> http_1_1_required;
error_name(N) -> {unknown, N}.
