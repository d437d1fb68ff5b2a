%% The shim's one connection to the routing sidecar: a minimal h2c (HTTP/2
%% with prior knowledge) gRPC client that keeps one long-lived bidi
%% FilterStream call open and correlates verdicts to callers by seq.
%%
%% Failure policy: the process never crashes because of the sidecar. It starts
%% disconnected, connects from handle_info with exponential backoff, and on any
%% connection or protocol failure answers every pending caller with
%% {error, unavailable} and reconnects. Callers check a public ETS row first so
%% they fail fast (unavailable, circuit_open) without messaging the process.
-module(consult_grpc).
-behaviour(gen_server).

-export([start_link/1, filter/3, notify/1, watched/2, status/0, unary_filter/3]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2]).

-include("logger.hrl").

-define(SERVER, ?MODULE).
-define(STATE_TAB, consult_grpc_state).
-define(WATCH_TAB, consult_watch).
-define(SHIM_VERSION, <<"0.1.0">>).

-define(STREAM_PATH, <<"/consult.v1.StanzaFilter/FilterStream">>).
-define(UNARY_PATH, <<"/consult.v1.StanzaFilter/Filter">>).

-define(PREFACE, <<"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n">>).
-define(DEFAULT_WINDOW, 65535).
-define(DEFAULT_FRAME_SIZE, 16384).
%% Our receive windows; replenished once this much has been consumed.
-define(RECV_WINDOW, 16#1000000).
-define(WINDOW_REFILL, 16#100000).
-define(MAX_GRPC_MESSAGE, 16#4000000).
-define(MAX_PENDING, 10000).
-define(CALL_MARGIN, 1000).
-define(BACKOFF_MIN, 100).
-define(BACKOFF_MAX, 5000).
%% A frozen peer must not block the process forever in gen_tcp:send.
-define(SEND_TIMEOUT, 5000).

%% Frame types and flags (RFC 7540 6).
-define(DATA, 0).
-define(HEADERS, 1).
-define(RST_STREAM, 3).
-define(SETTINGS, 4).
-define(PUSH_PROMISE, 5).
-define(PING, 6).
-define(GOAWAY, 7).
-define(WINDOW_UPDATE, 8).
-define(CONTINUATION, 9).
-define(END_STREAM, 16#1).
-define(ACK, 16#1).
-define(END_HEADERS, 16#4).
-define(PADDED, 16#8).
-define(PRIORITY, 16#20).
-define(CANCEL, 16#8).

-record(stream, {
    id :: pos_integer(),
    kind :: main | {unary, gen_server:from(), reference()},
    send_win :: integer(),
    out = <<>> :: binary(),        %% DATA waiting for send window
    out_fin = false :: boolean(),  %% END_STREAM goes with the last queued byte
    in = <<>> :: binary(),         %% partial gRPC message
    in_unacked = 0 :: non_neg_integer(),
    messages = [] :: [binary()]    %% unary: response messages, newest first
}).

-record(st, {
    host :: string(),
    port :: inet:port_number(),
    authority :: binary(),
    hello :: iodata(),
    connect_timeout :: timeout(),
    threshold :: pos_integer(),
    cooldown :: non_neg_integer(),
    sock = undefined :: undefined | gen_tcp:socket(),
    buf = <<>> :: binary(),
    %% A header block still waiting for CONTINUATION: {StreamId, Flags, Fragments}.
    continuation = undefined :: undefined | {pos_integer(), integer(), [binary()]},
    hpack = consult_hpack:new() :: consult_hpack:decoder(),
    max_frame = ?DEFAULT_FRAME_SIZE :: pos_integer(),
    peer_window = ?DEFAULT_WINDOW :: integer(),  %% peer's SETTINGS_INITIAL_WINDOW_SIZE
    conn_send_win = ?DEFAULT_WINDOW :: integer(),
    conn_unacked = 0 :: non_neg_integer(),
    next_stream = 1 :: pos_integer(),
    main = undefined :: undefined | pos_integer(),
    %% Identifies the current main stream: stream ids start at 1 again on
    %% every connection, so an id alone cannot tell an old stream from a new one.
    main_ref = undefined :: undefined | reference(),
    streams = #{} :: #{pos_integer() => #stream{}},
    seq = 0 :: non_neg_integer(),
    pending = #{} :: #{non_neg_integer() => {gen_server:from(), reference()}},
    backoff = ?BACKOFF_MIN :: pos_integer(),
    attempts = 0 :: non_neg_integer(),
    failures = 0 :: non_neg_integer(),  %% consecutive timeouts
    breaker = closed :: closed | {open, integer()},
    watch_gen = 0 :: non_neg_integer(),
    on_watch = undefined :: undefined | {module(), atom()},
    on_inject = undefined :: undefined | {module(), atom()},
    watch_file = undefined :: undefined | file:filename()
}).

%%% API

-spec start_link(#{host := string() | binary(), port := inet:port_number(),
                   hosts := [binary()], node := binary(),
                   breaker_threshold => pos_integer(), breaker_cooldown => non_neg_integer(),
                   connect_timeout => timeout(), on_watch => {module(), atom()},
                   on_inject => {module(), atom()}, watch_file => file:filename()}) ->
          gen_server:start_ret().
start_link(Opts) ->
    gen_server:start_link({local, ?SERVER}, ?MODULE, Opts, []).

-spec filter(binary(), iodata(), pos_integer()) ->
          {ok, consult_pb:verdict()}
        | {error, unavailable | timeout | circuit_open | overloaded}.
filter(Host, Xml, TimeoutMs) when is_binary(Host), is_integer(TimeoutMs), TimeoutMs > 0 ->
    %% When the caller stops waiting, on the wall clock the sidecar shares (NTP).
    Deadline = erlang:system_time(millisecond) + TimeoutMs,
    case fast_check() of
        ok -> call({filter, Host, iolist_to_binary(Xml), TimeoutMs, Deadline}, TimeoutMs);
        Error -> Error
    end.

%% Fire and forget; dropped while disconnected. Encoded here so a malformed
%% event fails in the caller, not in the connection process.
-spec notify(consult_pb:session_event()) -> ok.
notify(Event) ->
    Msg = iolist_to_binary(consult_pb:encode_shim_message({event, Event})),
    gen_server:cast(?SERVER, {notify, Msg}).

-spec watched(shop | agent, binary()) -> boolean().
watched(Kind, BareJid) ->
    try ets:member(?WATCH_TAB, {Kind, BareJid})
    catch error:badarg -> false
    end.

-spec status() -> map().
status() ->
    try gen_server:call(?SERVER, status)
    catch exit:_ -> #{running => false}
    end.

%% A unary Filter call on its own stream of the same connection (debugging).
-spec unary_filter(binary(), iodata(), pos_integer()) ->
          {ok, consult_pb:verdict()} | {error, {grpc, binary(), binary()}} | {error, term()}.
unary_filter(Host, Xml, TimeoutMs) when is_binary(Host), is_integer(TimeoutMs), TimeoutMs > 0 ->
    call({unary, Host, iolist_to_binary(Xml), TimeoutMs}, TimeoutMs).

fast_check() ->
    try ets:lookup(?STATE_TAB, status) of
        [{status, true, closed}] -> ok;
        [{status, true, {open, Until}}] ->
            case now_ms() >= Until of
                true -> ok;  %% half-open: let requests probe
                false -> {error, circuit_open}
            end;
        _ -> {error, unavailable}
    catch error:badarg -> {error, unavailable}
    end.

call(Request, TimeoutMs) ->
    try gen_server:call(?SERVER, Request, TimeoutMs + ?CALL_MARGIN)
    catch
        exit:{timeout, _} -> {error, timeout};
        exit:_ -> {error, unavailable}
    end.

%%% gen_server

init(Opts = #{host := Host, port := Port, hosts := Hosts, node := Node}) ->
    ets:new(?STATE_TAB, [named_table, public, set, {read_concurrency, true}]),
    ets:new(?WATCH_TAB, [named_table, public, set, {read_concurrency, true}]),
    WatchFile = maps:get(watch_file, Opts, undefined),
    HostStr = unicode:characters_to_list(Host),
    Hello = consult_pb:encode_shim_message(
              {hello, #{node => Node, hosts => Hosts, shim_version => ?SHIM_VERSION}}),
    St = #st{host = HostStr,
             port = Port,
             authority = iolist_to_binary([HostStr, $:, integer_to_list(Port)]),
             hello = Hello,
             connect_timeout = maps:get(connect_timeout, Opts, 1000),
             threshold = maps:get(breaker_threshold, Opts, 5),
             cooldown = maps:get(breaker_cooldown, Opts, 5000),
             on_watch = maps:get(on_watch, Opts, undefined),
             on_inject = maps:get(on_inject, Opts, undefined),
             watch_file = WatchFile},
    self() ! connect,
    {ok, publish(load_watch(WatchFile, St))}.

handle_call(status, _From, St) ->
    {reply, status_map(St), St};
handle_call({filter, _, _, _, _}, _From, St = #st{sock = undefined}) ->
    {reply, {error, unavailable}, St};
handle_call({filter, _, _, _, _}, _From, St = #st{pending = P}) when map_size(P) >= ?MAX_PENDING ->
    {reply, {error, overloaded}, St};
handle_call({filter, Host, Stanza, Timeout, Deadline}, From, St = #st{seq = Seq0, pending = P}) ->
    Seq = Seq0 + 1,
    Msg = consult_pb:encode_shim_message(
            {filter, #{seq => Seq, hook => filter_packet, host => Host, stanza => Stanza,
                       deadline_ms => Deadline}}),
    TRef = erlang:start_timer(Timeout, self(), {filter_timeout, Seq}),
    St1 = St#st{seq = Seq, pending = P#{Seq => {From, TRef}}},
    {noreply, send_message(St1#st.main, Msg, false, St1)};
handle_call({unary, _, _, _}, _From, St = #st{sock = undefined}) ->
    {reply, {error, unavailable}, St};
handle_call({unary, Host, Stanza, Timeout}, From, St) ->
    Msg = consult_pb:encode_filter_request(
            #{seq => 0, hook => filter_packet, host => Host, stanza => Stanza}),
    TRef = erlang:start_timer(Timeout, self(), {unary_timeout, St#st.next_stream}),
    GrpcTimeout = {<<"grpc-timeout">>, [integer_to_list(Timeout), $m]},
    {Id, St1} = open_stream(?UNARY_PATH, [GrpcTimeout], {unary, From, TRef}, St),
    {noreply, send_message(Id, Msg, true, St1)}.

handle_cast({notify, Msg}, St = #st{main = Main}) when Main =/= undefined ->
    {noreply, send_message(Main, Msg, false, St)};
handle_cast({notify, _}, St) ->
    {noreply, St};
%% From run_on_inject, once the stanzas are routed. An ack for an earlier main
%% stream is dropped: the sidecar sends that Inject again on the new stream.
handle_cast({inject_ack, Ref, Id}, St = #st{main = Main, main_ref = Ref}) when Main =/= undefined ->
    Msg = consult_pb:encode_shim_message({inject_ack, #{id => Id}}),
    {noreply, send_message(Main, Msg, false, St)};
handle_cast({inject_ack, _Ref, _Id}, St) ->
    {noreply, St}.

handle_info(connect, St = #st{sock = undefined}) ->
    {noreply, connect(St)};
handle_info({tcp, Sock, Data}, St = #st{sock = Sock, buf = Buf}) ->
    St1 = guarded(fun() -> process_frames(St#st{buf = <<Buf/binary, Data/binary>>}) end, St),
    St1#st.sock =:= Sock andalso inet:setopts(Sock, [{active, once}]),
    {noreply, St1};
handle_info({tcp_closed, Sock}, St = #st{sock = Sock}) ->
    {noreply, fail(closed, St)};
handle_info({tcp_error, Sock, Reason}, St = #st{sock = Sock}) ->
    {noreply, fail({tcp_error, Reason}, St)};
handle_info({send_failed, Sock, Reason}, St = #st{sock = Sock}) ->
    {noreply, fail({send_failed, Reason}, St)};
handle_info({timeout, TRef, {filter_timeout, Seq}}, St = #st{pending = P}) ->
    case maps:take(Seq, P) of
        {{From, TRef}, P1} ->
            gen_server:reply(From, {error, timeout}),
            {noreply, breaker_failure(St#st{pending = P1})};
        _ ->
            {noreply, St}
    end;
handle_info({timeout, TRef, {unary_timeout, Id}}, St = #st{streams = Streams}) ->
    case Streams of
        #{Id := #stream{kind = {unary, From, TRef}}} ->
            gen_server:reply(From, {error, timeout}),
            send(frame(?RST_STREAM, 0, Id, <<?CANCEL:32>>), St),
            {noreply, St#st{streams = maps:remove(Id, Streams)}};
        _ ->
            {noreply, St}
    end;
handle_info(_Stale, St) ->
    %% Messages from an earlier socket, already-handled timers.
    {noreply, St}.

terminate(_Reason, #st{sock = Sock}) ->
    Sock =:= undefined orelse gen_tcp:close(Sock),
    ok.

%%% Connection lifecycle

connect(St = #st{host = Host, port = Port, attempts = Attempts}) ->
    Opts = [binary, {active, false}, {nodelay, true},
            {send_timeout, ?SEND_TIMEOUT}, {send_timeout_close, true}],
    case gen_tcp:connect(Host, Port, Opts, St#st.connect_timeout) of
        {ok, Sock} ->
            ?INFO_MSG("consult_grpc: connected to sidecar ~s:~b", [Host, Port]),
            Fresh = St#st{sock = Sock, buf = <<>>, continuation = undefined,
                          hpack = consult_hpack:new(), max_frame = ?DEFAULT_FRAME_SIZE,
                          peer_window = ?DEFAULT_WINDOW, conn_send_win = ?DEFAULT_WINDOW,
                          conn_unacked = 0, next_stream = 1, streams = #{},
                          backoff = ?BACKOFF_MIN, attempts = 0},
            Settings = <<2:16, 0:32, 4:16, ?RECV_WINDOW:32>>,  %% ENABLE_PUSH, INITIAL_WINDOW_SIZE
            send([?PREFACE, frame(?SETTINGS, 0, 0, Settings),
                  frame(?WINDOW_UPDATE, 0, 0, <<(?RECV_WINDOW - ?DEFAULT_WINDOW):32>>)], Fresh),
            {Main, St1} = open_stream(?STREAM_PATH, [], main, Fresh),
            St2 = send_message(Main, St#st.hello, false,
                               St1#st{main = Main, main_ref = make_ref()}),
            inet:setopts(Sock, [{active, once}]),
            publish(St2);
        {error, Reason} ->
            %% Only the first failure of a series is worth a log line.
            Attempts =:= 0 andalso
                ?WARNING_MSG("consult_grpc: sidecar ~s:~b unavailable (~p), retrying",
                             [Host, Port, Reason]),
            schedule_reconnect(St)
    end.

%% Every failure ends here: answer everyone now, then reconnect later.
fail(Reason, St = #st{sock = Sock, pending = Pending, streams = Streams}) ->
    ?WARNING_MSG("consult_grpc: sidecar connection lost (~p), reconnecting", [Reason]),
    gen_tcp:close(Sock),
    maps:foreach(fun(_Seq, {From, TRef}) ->
                         erlang:cancel_timer(TRef),
                         gen_server:reply(From, {error, unavailable})
                 end, Pending),
    [begin erlang:cancel_timer(TRef), gen_server:reply(From, {error, unavailable}) end
     || #stream{kind = {unary, From, TRef}} <- maps:values(Streams)],
    schedule_reconnect(St#st{sock = undefined, main = undefined, main_ref = undefined,
                             pending = #{}, streams = #{}, buf = <<>>, continuation = undefined}).

schedule_reconnect(St = #st{backoff = Backoff, attempts = Attempts}) ->
    erlang:send_after(Backoff, self(), connect),
    publish(St#st{backoff = min(Backoff * 2, ?BACKOFF_MAX), attempts = Attempts + 1}).

%% Runs frame processing; a protocol error or any bug triggered by network
%% input becomes a connection failure instead of a crash.
guarded(Fun, St) ->
    try Fun()
    catch
        throw:{h2, Reason} ->
            fail(Reason, St);
        Class:Reason:Stack ->
            ?WARNING_MSG("consult_grpc: error on sidecar input: ~p:~p ~p", [Class, Reason, Stack]),
            fail({internal, Reason}, St)
    end.

%%% Breaker and published state

breaker_failure(St = #st{failures = F, breaker = B, threshold = T, cooldown = C}) ->
    Now = now_ms(),
    B1 = case B of
             closed when F + 1 >= T -> {open, Now + C};
             {open, Until} when Now >= Until -> {open, Now + C};  %% half-open probe failed
             _ -> B
         end,
    %% Logged when it opens; a failed half-open probe only reopens it.
    B =:= closed andalso B1 =/= B andalso
        ?WARNING_MSG("consult_grpc: circuit breaker open after ~b timeouts in a row", [F + 1]),
    publish(St#st{failures = F + 1, breaker = B1}).

breaker_success(St = #st{breaker = closed}) ->
    St#st{failures = 0};
breaker_success(St) ->
    ?INFO_MSG("consult_grpc: circuit breaker closed, the sidecar answers again", []),
    publish(St#st{failures = 0, breaker = closed}).

publish(St = #st{sock = Sock, breaker = Breaker}) ->
    ets:insert(?STATE_TAB, {status, Sock =/= undefined, Breaker}),
    St.

status_map(St = #st{breaker = B}) ->
    Breaker = case B of
                  closed -> closed;
                  {open, Until} ->
                      case now_ms() >= Until of true -> half_open; false -> open end
              end,
    #{running => true, connected => St#st.sock =/= undefined, breaker => Breaker,
      consecutive_timeouts => St#st.failures, pending => map_size(St#st.pending),
      streams => map_size(St#st.streams), reconnect_attempts => St#st.attempts}.

now_ms() -> erlang:monotonic_time(millisecond).

%%% Sending

send(Data, #st{sock = Sock}) ->
    %% A failed send is reported as a message so that failure handling
    %% happens in one place, outside whatever is sending.
    case gen_tcp:send(Sock, Data) of
        ok -> ok;
        {error, Reason} -> self() ! {send_failed, Sock, Reason}, ok
    end.

frame(Type, Flags, StreamId, Payload) ->
    [<<(iolist_size(Payload)):24, Type:8, Flags:8, 0:1, StreamId:31>>, Payload].

open_stream(Path, ExtraHeaders, Kind, St = #st{next_stream = Id, streams = Streams}) ->
    Block = consult_hpack:encode(
              [{<<":method">>, <<"POST">>}, {<<":scheme">>, <<"http">>},
               {<<":path">>, Path}, {<<":authority">>, St#st.authority},
               {<<"content-type">>, <<"application/grpc">>}, {<<"te">>, <<"trailers">>}
               | ExtraHeaders]),
    send(frame(?HEADERS, ?END_HEADERS, Id, Block), St),
    Stream = #stream{id = Id, kind = Kind, send_win = St#st.peer_window},
    {Id, St#st{next_stream = Id + 2, streams = Streams#{Id => Stream}}}.

%% Queues one length-prefixed gRPC message on a stream and sends what the
%% flow-control windows allow.
send_message(Id, Msg, Fin, St = #st{streams = Streams}) ->
    S = #stream{out = Out} = maps:get(Id, Streams),
    Framed = iolist_to_binary([Out, 0, <<(iolist_size(Msg)):32>>, Msg]),
    flush_stream(S#stream{out = Framed, out_fin = Fin}, St).

flush(St = #st{streams = Streams}) ->
    lists:foldl(fun(Id, Acc) -> flush_stream(maps:get(Id, Acc#st.streams), Acc) end,
                St, lists:sort(maps:keys(Streams))).

flush_stream(S = #stream{out = <<>>}, St) ->
    store_stream(S, St);
flush_stream(S = #stream{id = Id, out = Out, send_win = SWin}, St = #st{conn_send_win = CWin}) ->
    case lists:min([CWin, SWin, St#st.max_frame, byte_size(Out)]) of
        N when N =< 0 ->
            store_stream(S, St);  %% window exhausted: wait for WINDOW_UPDATE
        N ->
            <<Chunk:N/binary, Rest/binary>> = Out,
            Flags = case Rest =:= <<>> andalso S#stream.out_fin of
                        true -> ?END_STREAM;
                        false -> 0
                    end,
            send(frame(?DATA, Flags, Id, Chunk), St),
            flush_stream(S#stream{out = Rest, send_win = SWin - N},
                         St#st{conn_send_win = CWin - N})
    end.

store_stream(S = #stream{id = Id}, St = #st{streams = Streams}) ->
    St#st{streams = Streams#{Id => S}}.

%%% Receiving

process_frames(#st{buf = <<Len:24, _/binary>>}) when Len > ?DEFAULT_FRAME_SIZE ->
    %% We never raise SETTINGS_MAX_FRAME_SIZE, so this is a peer error.
    throw({h2, {frame_too_large, Len}});
process_frames(St = #st{buf = <<Len:24, Type:8, Flags:8, _:1, Id:31,
                                Payload:Len/binary, Rest/binary>>}) ->
    process_frames(handle_frame(Type, Flags, Id, Payload, St#st{buf = Rest}));
process_frames(St) ->
    St.

handle_frame(Type, _Flags, Id, _Payload, #st{continuation = {CId, _, _}})
  when Type =/= ?CONTINUATION; Id =/= CId ->
    throw({h2, expected_continuation});
handle_frame(?DATA, Flags, Id, Payload, St) ->
    Data = strip_padding(Flags, Payload),
    St1 = consumed_conn(byte_size(Payload), St),
    case St1#st.streams of
        #{Id := S = #stream{in = In, in_unacked = Unacked}} ->
            S1 = refill_stream(S#stream{in = <<In/binary, Data/binary>>,
                                        in_unacked = Unacked + byte_size(Payload)}, St1),
            {Msgs, Rest} = grpc_messages(S1#stream.in, []),
            stream_data(S1#stream{in = Rest}, Msgs, Flags band ?END_STREAM =/= 0, St1);
        _ ->
            St1  %% a stream we already gave up on
    end;
handle_frame(?HEADERS, Flags, Id, Payload, St) ->
    Fragment = strip_priority(Flags, strip_padding(Flags, Payload)),
    case Flags band ?END_HEADERS of
        0 -> St#st{continuation = {Id, Flags, [Fragment]}};
        _ -> header_block(Id, Flags, Fragment, St)
    end;
handle_frame(?CONTINUATION, Flags, Id, Payload, St = #st{continuation = {Id, HFlags, Acc}}) ->
    case Flags band ?END_HEADERS of
        0 -> St#st{continuation = {Id, HFlags, [Payload | Acc]}};
        _ -> header_block(Id, HFlags, iolist_to_binary(lists:reverse(Acc, [Payload])),
                          St#st{continuation = undefined})
    end;
handle_frame(?CONTINUATION, _Flags, _Id, _Payload, _St) ->
    throw({h2, unexpected_continuation});
handle_frame(?RST_STREAM, _Flags, Id, <<Code:32>>, St = #st{streams = Streams}) ->
    case Streams of
        #{Id := #stream{kind = main}} ->
            throw({h2, {rst_stream, Code}});
        #{Id := #stream{kind = {unary, From, TRef}}} ->
            erlang:cancel_timer(TRef),
            gen_server:reply(From, {error, {rst_stream, Code}}),
            St#st{streams = maps:remove(Id, Streams)};
        _ ->
            St
    end;
handle_frame(?SETTINGS, Flags, 0, Payload, St) when Flags band ?ACK =:= 0 ->
    St1 = apply_settings(Payload, St),
    send(frame(?SETTINGS, ?ACK, 0, <<>>), St1),
    flush(St1);
handle_frame(?PUSH_PROMISE, _Flags, _Id, _Payload, _St) ->
    throw({h2, push_promise});  %% we sent ENABLE_PUSH=0
handle_frame(?PING, Flags, 0, Opaque = <<_:8/binary>>, St) when Flags band ?ACK =:= 0 ->
    send(frame(?PING, ?ACK, 0, Opaque), St),
    St;
handle_frame(?GOAWAY, _Flags, 0, <<_:1, _LastId:31, Code:32, _/binary>>, _St) ->
    throw({h2, {goaway, Code}});
handle_frame(?WINDOW_UPDATE, _Flags, 0, <<_:1, Inc:31>>, St = #st{conn_send_win = W}) ->
    flush(St#st{conn_send_win = W + Inc});
handle_frame(?WINDOW_UPDATE, _Flags, Id, <<_:1, Inc:31>>, St = #st{streams = Streams}) ->
    case Streams of
        #{Id := S = #stream{send_win = W}} -> flush_stream(S#stream{send_win = W + Inc}, St);
        _ -> St
    end;
handle_frame(_Type, _Flags, _Id, _Payload, St) ->
    %% PRIORITY, SETTINGS/PING acks, unknown extension frames.
    St.

strip_padding(Flags, <<PadLen, Rest/binary>>) when Flags band ?PADDED =/= 0 ->
    case byte_size(Rest) - PadLen of
        N when N >= 0 -> binary:part(Rest, 0, N);
        _ -> throw({h2, bad_padding})
    end;
strip_padding(Flags, _) when Flags band ?PADDED =/= 0 ->
    throw({h2, bad_padding});
strip_padding(_Flags, Payload) ->
    Payload.

strip_priority(Flags, <<_:5/binary, Rest/binary>>) when Flags band ?PRIORITY =/= 0 -> Rest;
strip_priority(Flags, _) when Flags band ?PRIORITY =/= 0 -> throw({h2, bad_priority});
strip_priority(_Flags, Fragment) -> Fragment.

apply_settings(<<>>, St) ->
    St;
apply_settings(<<4:16, Size:32, Rest/binary>>, St = #st{peer_window = Old, streams = Streams})
  when Size =< 16#7fffffff ->
    %% A new INITIAL_WINDOW_SIZE shifts every open stream's window (6.9.2).
    Delta = Size - Old,
    Streams1 = maps:map(fun(_, S = #stream{send_win = W}) -> S#stream{send_win = W + Delta} end,
                        Streams),
    apply_settings(Rest, St#st{peer_window = Size, streams = Streams1});
apply_settings(<<5:16, Size:32, Rest/binary>>, St)
  when Size >= ?DEFAULT_FRAME_SIZE, Size =< 16#ffffff ->
    apply_settings(Rest, St#st{max_frame = Size});
apply_settings(<<Key:16, _:32, Rest/binary>>, St) when Key =/= 4, Key =/= 5 ->
    apply_settings(Rest, St);
apply_settings(_, _St) ->
    throw({h2, bad_settings}).

%% Gives connection-level receive window back in large steps.
consumed_conn(N, St = #st{conn_unacked = U}) when U + N >= ?WINDOW_REFILL ->
    send(frame(?WINDOW_UPDATE, 0, 0, <<(U + N):32>>), St),
    St#st{conn_unacked = 0};
consumed_conn(N, St = #st{conn_unacked = U}) ->
    St#st{conn_unacked = U + N}.

refill_stream(S = #stream{id = Id, in_unacked = U}, St) when U >= ?WINDOW_REFILL ->
    send(frame(?WINDOW_UPDATE, 0, Id, <<U:32>>), St),
    S#stream{in_unacked = 0};
refill_stream(S, _St) ->
    S.

grpc_messages(<<0, Len:32, Msg:Len/binary, Rest/binary>>, Acc) ->
    grpc_messages(Rest, [Msg | Acc]);
grpc_messages(<<Compressed, _/binary>>, _Acc) when Compressed =/= 0 ->
    throw({h2, compressed_message});  %% we never offer grpc-accept-encoding
grpc_messages(<<_, Len:32, _/binary>>, _Acc) when Len > ?MAX_GRPC_MESSAGE ->
    throw({h2, {message_too_large, Len}});
grpc_messages(Rest, Acc) ->
    {lists:reverse(Acc), Rest}.

stream_data(S = #stream{kind = main}, Msgs, EndStream, St) ->
    St1 = lists:foldl(fun sidecar_message/2, store_stream(S, St), Msgs),
    EndStream andalso throw({h2, main_stream_ended}),
    St1;
stream_data(S = #stream{kind = {unary, _, _}, messages = Old}, Msgs, EndStream, St) ->
    S1 = S#stream{messages = lists:reverse(Msgs, Old)},
    case EndStream of
        true -> unary_done(S1, [], St);  %% ended without trailers
        false -> store_stream(S1, St)
    end.

sidecar_message(Msg, St = #st{pending = P}) ->
    case consult_pb:decode_sidecar_message(Msg) of
        {verdict, V = #{seq := Seq}} ->
            case maps:take(Seq, P) of
                {{From, TRef}, P1} ->
                    erlang:cancel_timer(TRef),
                    gen_server:reply(From, {ok, V}),
                    breaker_success(St#st{pending = P1});
                error ->
                    St  %% late: the caller already got {error, timeout}
            end;
        {watch, W} ->
            St1 = store_watch(W, St),
            save_watch(W, St1),
            run_on_watch(St1),
            St1;
        {inject, #{stanzas := Stanzas, id := Id}} ->
            run_on_inject(Stanzas, Id, St),
            St;
        {unknown, _} ->
            St
    end.

%% The owner learns which JIDs matter only now (e.g. to report the agents'
%% current sessions after a reconnect); it runs apart so it cannot block us.
run_on_watch(#st{on_watch = undefined}) -> ok;
run_on_watch(#st{on_watch = {M, F}}) -> _ = spawn(M, F, []), ok.

%% The callback routes the stanzas apart too; only when it returns is the
%% Inject acknowledged (id 0: no ack wanted). A crash sends no ack, so the
%% sidecar sends the stanzas again. With no callback nothing was routed: no ack.
run_on_inject(_Stanzas, _Id, #st{on_inject = undefined}) -> ok;
run_on_inject(Stanzas, Id, #st{on_inject = {M, F}, main_ref = Ref}) ->
    Conn = self(),
    _ = spawn(fun() ->
                      _ = M:F(Stanzas),
                      Id =:= 0 orelse gen_server:cast(Conn, {inject_ack, Ref, Id})
              end),
    ok.

%% The last list is kept on disk, so that after an ejabberd restart the shim
%% knows which JIDs matter even before the sidecar answers.
save_watch(_W, #st{watch_file = undefined}) -> ok;
save_watch(W, #st{watch_file = File}) ->
    case file:write_file(File, term_to_binary(W)) of
        ok -> ok;
        {error, Why} -> ?WARNING_MSG("consult_grpc: cannot save the watch list to ~ts: ~p", [File, Why])
    end.

load_watch(undefined, St) -> St;
load_watch(File, St) ->
    case file:read_file(File) of
        {ok, Bin} ->
            try binary_to_term(Bin, [safe]) of
                #{shops := _, agents := _} = W -> store_watch(W, St);
                _ -> St
            catch _:_ -> St
            end;
        {error, _} -> St
    end.

%% Insert the new list, then delete whatever is left from older ones, so
%% readers never see an empty table in between.
store_watch(#{shops := Shops, agents := Agents}, St = #st{watch_gen = G}) ->
    Gen = G + 1,
    ets:insert(?WATCH_TAB, [{{shop, J}, Gen} || J <- Shops] ++ [{{agent, J}, Gen} || J <- Agents]),
    ets:select_delete(?WATCH_TAB, [{{'_', '$1'}, [{'=/=', '$1', Gen}], [true]}]),
    St#st{watch_gen = Gen}.

header_block(Id, Flags, Block, St) ->
    %% Decoded even when unwanted: the HPACK table must stay in sync.
    case consult_hpack:decode(Block, St#st.hpack) of
        {ok, Headers, Hpack} -> headers(Id, Flags band ?END_STREAM =/= 0, Headers,
                                        St#st{hpack = Hpack});
        {error, Reason} -> throw({h2, {hpack, Reason}})
    end.

headers(Id, EndStream, Headers, St) ->
    Status = proplists:get_value(<<":status">>, Headers, <<"200">>),
    case St#st.streams of
        #{Id := #stream{kind = main}} when Status =/= <<"200">>; EndStream ->
            %% Trailers (or trailers-only) end our long-lived call.
            throw({h2, {main_stream_ended, Status, grpc_status(Headers)}});
        #{Id := S = #stream{kind = {unary, _, _}}} when Status =/= <<"200">>; EndStream ->
            unary_done(S, Headers, St);
        _ ->
            St
    end.

unary_done(#stream{id = Id, kind = {unary, From, TRef}, messages = Msgs}, Trailers, St) ->
    erlang:cancel_timer(TRef),
    Reply = case {grpc_status(Trailers), Msgs} of
                {{<<"0">>, _}, [Msg]} -> {ok, consult_pb:decode_verdict(Msg)};
                {{<<"0">>, _}, _} -> {error, {bad_response, length(Msgs)}};
                {{Code, Message}, _} -> {error, {grpc, Code, Message}}
            end,
    gen_server:reply(From, Reply),
    St#st{streams = maps:remove(Id, St#st.streams)}.

grpc_status(Headers) ->
    Code = proplists:get_value(<<"grpc-status">>, Headers, <<"unknown">>),
    {Code, percent_decode(proplists:get_value(<<"grpc-message">>, Headers, <<>>))}.

%% grpc-message is percent-encoded UTF-8.
percent_decode(<<$%, H, L, Rest/binary>>) ->
    case catch binary_to_integer(<<H, L>>, 16) of
        Byte when is_integer(Byte) -> <<Byte, (percent_decode(Rest))/binary>>;
        _ -> <<$%, (percent_decode(<<H, L, Rest/binary>>))/binary>>
    end;
percent_decode(<<C, Rest/binary>>) ->
    <<C, (percent_decode(Rest))/binary>>;
percent_decode(<<>>) ->
    <<>>.
