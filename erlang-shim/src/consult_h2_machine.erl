%% The client side of one HTTP/2 connection (RFC 7540) as a pure state
%% machine, for consult_grpc_conn, which owns the socket.
%%
%% What it promises: no I/O, no processes, no timers, no process dictionary.
%% Frames come in already parsed (consult_h2:parse/2 with max_frame_size/1);
%% every function returns the bytes to send instead of sending them, and
%% what the frame means for the streams as a list of events. Peer input
%% never makes frame/2 throw: it returns {ok, ...} or a connection error,
%% after which the caller sends goaway/2 and closes.
%%
%% It keeps what HTTP/2 needs: SETTINGS both ways (acked), flow-control
%% windows both ways (our receive windows given back in large steps, data
%% queued per stream until the peer's windows allow it), PING acks, GOAWAY
%% and its last-stream-id, RST_STREAM, CONTINUATION sequencing, the header
%% block and header list limits, HPACK, and stream ids running out.
%%
%% A stream is forgotten once the peer ends it (END_STREAM, RST_STREAM,
%% refused by GOAWAY) or we reset it: for a gRPC client the call is then
%% over, whatever it had not sent yet included.
-module(consult_h2_machine).

-export([new/1, frame/2, max_frame_size/1, open_stream/2, send/5, reset_stream/3,
         ping/2, goaway/2, queued/3, info/1]).
-export_type([machine/0, event/0, fin/0]).

-define(DEFAULT_WINDOW, 65535).
-define(DEFAULT_FRAME_SIZE, 16384).
-define(DEFAULT_TABLE_SIZE, 4096).
-define(MAX_WINDOW, 16#7fffffff).
-define(MAX_STREAM_ID, 16#7fffffff).
%% Our receive windows; given back once this much has been consumed.
-define(RECV_WINDOW, 16#1000000).
-define(WINDOW_REFILL, 16#100000).
%% A header block (all its CONTINUATIONs) and the decoded list may not be
%% larger; we say so in SETTINGS_MAX_HEADER_LIST_SIZE.
-define(MAX_HEADER_BLOCK, 65536).

-type fin() :: fin | nofin.
-type headers() :: [{binary(), binary()}].
-type error_code() :: consult_h2:error_code().

-type event() :: {headers, pos_integer(), fin(), headers()}  %% a stream's first header block
               | {trailers, pos_integer(), headers()}         %% a later one, ending the stream
               | {data, pos_integer(), fin(), binary()}
               | {rst_stream, pos_integer(), error_code()}    %% the peer reset the stream
               | {stream_error, pos_integer(), error_code(), term()}  %% we reset it
               | {goaway, LastId :: non_neg_integer(), error_code(), Debug :: binary(),
                  Refused :: [pos_integer()]}
               | {ping_ack, binary()}.

-record(stream, {
    id :: pos_integer(),
    send_win :: integer(),
    in_unacked = 0 :: non_neg_integer(),  %% received, not yet given back
    %% Data waiting for send window, oldest first, each with its caller's tag.
    out = queue:new() :: queue:queue({term(), binary()}),
    out_bytes = 0 :: non_neg_integer(),
    out_tags = #{} :: #{term() => pos_integer()},
    out_fin = false :: boolean(),  %% END_STREAM goes with the last queued byte
    headers_seen = false :: boolean()
}).

-record(h2m, {
    %% A header block still waiting for CONTINUATION: {StreamId, EndStream, Fragments, Size}.
    continuation = undefined :: undefined | {pos_integer(), boolean(), [binary()], non_neg_integer()},
    hpack = consult_hpack:new() :: consult_hpack:decoder(),
    %% The peer's settings.
    max_frame = ?DEFAULT_FRAME_SIZE :: pos_integer(),
    peer_window = ?DEFAULT_WINDOW :: non_neg_integer(),
    peer_max_streams = infinity :: non_neg_integer() | infinity,
    peer_table_size = ?DEFAULT_TABLE_SIZE :: non_neg_integer(),
    send_win = ?DEFAULT_WINDOW :: integer(),   %% connection send window
    recv_win = ?RECV_WINDOW :: integer(),      %% what the peer may still send us
    unacked = 0 :: non_neg_integer(),          %% received, not yet given back
    next_stream = 1 :: pos_integer(),
    max_stream_id = ?MAX_STREAM_ID :: pos_integer(),
    streams = #{} :: #{pos_integer() => #stream{}},
    goaway = undefined :: undefined | non_neg_integer()  %% the peer's last-stream-id
}).
-opaque machine() :: #h2m{}.

%%% Starting

%% The connection preface, our SETTINGS and the connection window we give,
%% to be sent first. max_stream_id (tests): the last stream id to use.
-spec new(#{max_stream_id => pos_integer()}) -> {ok, iodata(), machine()}.
new(Opts) ->
    Send = [consult_h2:preface(),
            consult_h2:settings([{enable_push, 0}, {initial_window_size, ?RECV_WINDOW},
                                 {max_header_list_size, ?MAX_HEADER_BLOCK}]),
            consult_h2:window_update(0, ?RECV_WINDOW - ?DEFAULT_WINDOW)],
    {ok, Send, #h2m{max_stream_id = maps:get(max_stream_id, Opts, ?MAX_STREAM_ID)}}.

%% The longest frame the peer may send us (we keep the default
%% SETTINGS_MAX_FRAME_SIZE): the limit to give consult_h2:parse/2.
-spec max_frame_size(machine()) -> pos_integer().
max_frame_size(#h2m{}) -> ?DEFAULT_FRAME_SIZE.

%%% Frames from the peer

%% One frame: the bytes to send in answer (acks, window updates, data the
%% peer's windows now allow, RST_STREAM) and the events, in order.
-spec frame(consult_h2:frame(), machine()) ->
          {ok, [event()], iodata(), machine()}
        | {error, {connection_error, error_code(), term()}, machine()}.
frame(Frame, M) ->
    try in(Frame, M) of
        {Events, Send, M1} -> {ok, Events, Send, M1}
    catch
        throw:{h2, Code, Reason} -> {error, {connection_error, Code, Reason}, M}
    end.

conn_error(Code, Reason) -> throw({h2, Code, Reason}).

%% A header block is in progress: only its CONTINUATION may come (6.10).
in({continuation, Id, EndHeaders, Fragment}, M = #h2m{continuation = {Id, ES, Acc, Size}}) ->
    Size1 = Size + byte_size(Fragment),
    Size1 =< ?MAX_HEADER_BLOCK orelse conn_error(enhance_your_calm, {header_block_too_large, Size1}),
    case EndHeaders of
        false ->
            {[], [], M#h2m{continuation = {Id, ES, [Fragment | Acc], Size1}}};
        true ->
            Block = iolist_to_binary(lists:reverse(Acc, [Fragment])),
            header_block(Id, ES, Block, M#h2m{continuation = undefined})
    end;
in(_Frame, #h2m{continuation = {_, _, _, _}}) ->
    conn_error(protocol_error, expected_continuation);
in({continuation, _, _, _}, _M) ->
    conn_error(protocol_error, unexpected_continuation);
in({data, Id, EndStream, Data, FlowLen}, M) ->
    %% Only the connection's window is checked: a stream's is given back in
    %% the same steps and never runs out first.
    {Send, M1} = consumed(FlowLen, M),
    case M1#h2m.streams of
        #{Id := _} when EndStream ->
            {[{data, Id, fin, Data}], Send, forget(Id, M1)};
        #{Id := S = #stream{in_unacked = U}} ->
            {Refill, S1} = refill(S#stream{in_unacked = U + FlowLen}),
            {[{data, Id, nofin, Data}], [Send, Refill], store(S1, M1)};
        _ ->
            {[], Send, M1}  %% a stream that is over: it still counted for the connection
    end;
in({headers, Id, EndStream, false, Fragment}, M) ->
    byte_size(Fragment) =< ?MAX_HEADER_BLOCK
        orelse conn_error(enhance_your_calm, {header_block_too_large, byte_size(Fragment)}),
    {[], [], M#h2m{continuation = {Id, EndStream, [Fragment], byte_size(Fragment)}}};
in({headers, Id, EndStream, true, Block}, M) ->
    header_block(Id, EndStream, Block, M);
in({rst_stream, Id, Code}, M = #h2m{streams = Streams}) ->
    case maps:is_key(Id, Streams) of
        true -> {[{rst_stream, Id, Code}], [], forget(Id, M)};
        false -> {[], [], M}
    end;
in({settings, Settings}, M) ->
    M1 = lists:foldl(fun setting/2, M, Settings),
    {Data, M2} = flush(M1),
    {[], [consult_h2:settings_ack(), Data], M2};
in({ping, Opaque}, M) ->
    {[], consult_h2:ping_ack(Opaque), M};
in({ping_ack, Opaque}, M) ->
    {[{ping_ack, Opaque}], [], M};
in({goaway, LastId, Code, Debug}, M = #h2m{streams = Streams, goaway = Old}) ->
    %% What the peer did not take it will never answer.
    Refused = lists:sort([Id || Id <- maps:keys(Streams), Id > LastId]),
    LastId1 = case Old of
                  undefined -> LastId;
                  _ -> min(LastId, Old)  %% a later GOAWAY may only lower it (6.8)
              end,
    {[{goaway, LastId, Code, Debug, Refused}], [],
     M#h2m{streams = maps:without(Refused, Streams), goaway = LastId1}};
in({window_update, 0, Inc}, M = #h2m{send_win = W}) ->
    W + Inc =< ?MAX_WINDOW orelse conn_error(flow_control_error, {window_overflow, 0, W + Inc}),
    {Data, M1} = flush(M#h2m{send_win = W + Inc}),
    {[], Data, M1};
in({window_update, Id, Inc}, M = #h2m{streams = Streams}) ->
    case Streams of
        #{Id := S = #stream{send_win = W}} when W + Inc =< ?MAX_WINDOW ->
            {Data, M1} = flush_stream(S#stream{send_win = W + Inc}, M),
            {[], Data, M1};
        #{Id := _} ->
            stream_error(Id, flow_control_error, {window_overflow, Id}, [], M);
        _ ->
            {[], [], M}
    end;
in({stream_error, Id, Code, Reason}, M) ->
    stream_error(Id, Code, Reason, [], M);
in(_Other, M) ->
    %% PRIORITY, SETTINGS acks, unknown frame types.
    {[], [], M}.

%% A stream error ends that stream only (RST_STREAM); told as an event when
%% the stream is one of ours.
stream_error(Id, Code, Reason, Send, M = #h2m{streams = Streams}) ->
    Events = case maps:is_key(Id, Streams) of
                 true -> [{stream_error, Id, Code, Reason}];
                 false -> []
             end,
    {Events, [Send, consult_h2:rst_stream(Id, Code)], forget(Id, M)}.

header_block(Id, EndStream, Block, M) ->
    %% Decoded even when unwanted: the HPACK table must stay in sync.
    case consult_hpack:decode(Block, M#h2m.hpack, ?MAX_HEADER_BLOCK) of
        {ok, Headers, Hpack} ->
            headers(Id, EndStream, Headers, M#h2m{hpack = Hpack});
        {error, header_list_too_large} ->
            conn_error(enhance_your_calm, header_list_too_large);
        {error, Reason} ->
            conn_error(compression_error, {hpack, Reason})
    end.

headers(Id, EndStream, Headers, M = #h2m{streams = Streams}) ->
    case Streams of
        #{Id := #stream{headers_seen = false}} when EndStream ->
            {[{headers, Id, fin, Headers}], [], forget(Id, M)};
        #{Id := S = #stream{headers_seen = false}} ->
            {[{headers, Id, nofin, Headers}], [], store(S#stream{headers_seen = true}, M)};
        #{Id := _} when EndStream ->
            {[{trailers, Id, Headers}], [], forget(Id, M)};
        _ ->
            %% Unknown streams; a later block without END_STREAM is ignored, as a
            %% gRPC server never sends one.
            {[], [], M}
    end.

%% A new INITIAL_WINDOW_SIZE shifts every open stream's window (6.9.2).
setting({initial_window_size, Size}, M = #h2m{peer_window = Old, streams = Streams}) ->
    Delta = Size - Old,
    Streams1 = maps:map(
                 fun(Id, S = #stream{send_win = W}) ->
                         W + Delta =< ?MAX_WINDOW
                             orelse conn_error(flow_control_error, {window_overflow, Id, W + Delta}),
                         S#stream{send_win = W + Delta}
                 end, Streams),
    M#h2m{peer_window = Size, streams = Streams1};
setting({max_frame_size, Size}, M) ->
    M#h2m{max_frame = Size};
setting({max_concurrent_streams, N}, M) ->
    M#h2m{peer_max_streams = N};
setting({header_table_size, N}, M) ->
    %% How much of its decoder's table our encoder may use: ours uses none.
    M#h2m{peer_table_size = N};
setting(_, M) ->
    M.

%% Connection-level receive window, given back in large steps. A peer that
%% sends beyond the window we gave breaks flow control (6.9.1).
consumed(N, #h2m{recv_win = W}) when N > W ->
    conn_error(flow_control_error, {receive_window_exceeded, N, W});
consumed(N, M = #h2m{unacked = U, recv_win = W}) when U + N >= ?WINDOW_REFILL ->
    {consult_h2:window_update(0, U + N), M#h2m{unacked = 0, recv_win = W + U}};
consumed(N, M = #h2m{unacked = U, recv_win = W}) ->
    {[], M#h2m{unacked = U + N, recv_win = W - N}}.

refill(S = #stream{id = Id, in_unacked = U}) when U >= ?WINDOW_REFILL ->
    {consult_h2:window_update(Id, U), S#stream{in_unacked = 0}};
refill(S) ->
    {[], S}.

%%% Our side

%% A request stream with these headers (pseudo-headers first), not ended:
%% its body follows with send/5.
-spec open_stream(headers(), machine()) ->
          {ok, pos_integer(), iodata(), machine()}
        | {error, stream_ids_exhausted | goaway | too_many_streams}.
open_stream(_Headers, #h2m{next_stream = Id, max_stream_id = Max}) when Id > Max ->
    {error, stream_ids_exhausted};
open_stream(_Headers, #h2m{goaway = LastId}) when LastId =/= undefined ->
    {error, goaway};
open_stream(_Headers, #h2m{peer_max_streams = Max, streams = Streams})
  when Max =/= infinity, map_size(Streams) >= Max ->
    %% SETTINGS_MAX_CONCURRENT_STREAMS: the peer would refuse the stream.
    {error, too_many_streams};
open_stream(Headers, M = #h2m{next_stream = Id, streams = Streams}) ->
    Send = consult_h2:headers(Id, consult_hpack:encode(Headers), false, M#h2m.max_frame),
    Stream = #stream{id = Id, send_win = M#h2m.peer_window},
    {ok, Id, Send, M#h2m{next_stream = Id + 2, streams = Streams#{Id => Stream}}}.

%% Queues data on a stream and gives what the windows allow now; fin: the
%% stream's last data. Tag: counted by queued/3 while some of this data
%% waits (undefined: not counted). A stream that is over takes nothing.
-spec send(pos_integer(), iodata(), fin(), term(), machine()) -> {ok, iodata(), machine()}.
send(Id, Data, IsFin, Tag, M = #h2m{streams = Streams}) ->
    case Streams of
        #{Id := S = #stream{out = Out, out_bytes = Bytes, out_tags = Tags}} ->
            Bin = iolist_to_binary(Data),
            Tags1 = case Tag of
                        undefined -> Tags;
                        _ -> Tags#{Tag => maps:get(Tag, Tags, 0) + 1}
                    end,
            {Send, M1} = flush_stream(S#stream{out = queue:in({Tag, Bin}, Out),
                                               out_bytes = Bytes + byte_size(Bin),
                                               out_tags = Tags1, out_fin = IsFin =:= fin}, M),
            {ok, Send, M1};
        _ ->
            {ok, [], M}
    end.

%% Ends one of our streams (RST_STREAM with Code) and forgets it.
-spec reset_stream(pos_integer(), error_code(), machine()) -> {ok, iodata(), machine()}.
reset_stream(Id, Code, M = #h2m{streams = Streams}) ->
    case maps:is_key(Id, Streams) of
        true -> {ok, consult_h2:rst_stream(Id, Code), forget(Id, M)};
        false -> {ok, [], M}
    end.

%% A PING; its ACK comes back as {ping_ack, Opaque}.
-spec ping(<<_:64>>, machine()) -> {ok, iodata(), machine()}.
ping(Opaque, M) ->
    {ok, consult_h2:ping(Opaque), M}.

%% Our GOAWAY: last stream id 0, as we accept no stream of the peer's.
-spec goaway(error_code(), machine()) -> {ok, iodata(), machine()}.
goaway(Code, M) ->
    {ok, consult_h2:goaway(0, Code, <<>>), M}.

%% How many of a stream's sends with this tag still wait, wholly or partly,
%% for the peer's windows.
-spec queued(pos_integer(), term(), machine()) -> non_neg_integer().
queued(Id, Tag, #h2m{streams = Streams}) ->
    case Streams of
        #{Id := #stream{out_tags = Tags}} -> maps:get(Tag, Tags, 0);
        _ -> 0
    end.

%% For status reports and tests.
-spec info(machine()) ->
          #{streams := non_neg_integer(), next_stream_id := pos_integer(),
            send_window := integer(), recv_window := integer(),
            peer_goaway := undefined | non_neg_integer(), peer_settings := map()}.
info(M = #h2m{streams = Streams}) ->
    #{streams => map_size(Streams), next_stream_id => M#h2m.next_stream,
      send_window => M#h2m.send_win, recv_window => M#h2m.recv_win,
      peer_goaway => M#h2m.goaway,
      peer_settings => #{max_concurrent_streams => M#h2m.peer_max_streams,
                         header_table_size => M#h2m.peer_table_size,
                         max_frame_size => M#h2m.max_frame,
                         initial_window_size => M#h2m.peer_window}}.

%%% Sending data within the windows

flush(M = #h2m{streams = Streams}) ->
    lists:foldl(fun(Id, {Acc, MAcc}) ->
                        {Data, M1} = flush_stream(maps:get(Id, MAcc#h2m.streams), MAcc),
                        {[Acc, Data], M1}
                end, {[], M}, lists:sort(maps:keys(Streams))).

flush_stream(S, M) ->
    flush_stream(S, M, []).

flush_stream(S = #stream{out_bytes = 0}, M, Acc) ->
    {lists:reverse(Acc), store(S, M)};
flush_stream(S = #stream{id = Id, out_bytes = Bytes, send_win = SWin}, M = #h2m{send_win = CWin}, Acc) ->
    case lists:min([CWin, SWin, M#h2m.max_frame, Bytes]) of
        N when N =< 0 ->
            {lists:reverse(Acc), store(S, M)};  %% window exhausted: wait for WINDOW_UPDATE
        N ->
            {Chunk, S1} = take_bytes(N, S, []),
            Fin = S1#stream.out_bytes =:= 0 andalso S1#stream.out_fin,
            flush_stream(S1#stream{send_win = SWin - N}, M#h2m{send_win = CWin - N},
                         [consult_h2:data(Id, Chunk, Fin) | Acc])
    end.

%% Takes N bytes off the front of a stream's queue (splitting a send if
%% need be); a tagged send leaves the count once all of it is taken.
take_bytes(0, S, Acc) ->
    {lists:reverse(Acc), S};
take_bytes(N, S = #stream{out = Out, out_bytes = Bytes, out_tags = Tags}, Acc) ->
    {{value, {Tag, Bin}}, Out1} = queue:out(Out),
    case byte_size(Bin) of
        Size when Size =< N ->
            take_bytes(N - Size, S#stream{out = Out1, out_bytes = Bytes - Size,
                                          out_tags = untag(Tag, Tags)}, [Bin | Acc]);
        _ ->
            <<Part:N/binary, Rest/binary>> = Bin,
            {lists:reverse(Acc, [Part]),
             S#stream{out = queue:in_r({Tag, Rest}, Out1), out_bytes = Bytes - N}}
    end.

untag(undefined, Tags) -> Tags;
untag(Tag, Tags) ->
    case maps:get(Tag, Tags) of
        1 -> maps:remove(Tag, Tags);
        N -> Tags#{Tag := N - 1}
    end.

store(S = #stream{id = Id}, M = #h2m{streams = Streams}) ->
    M#h2m{streams = Streams#{Id => S}}.

forget(Id, M = #h2m{streams = Streams}) ->
    M#h2m{streams = maps:remove(Id, Streams)}.
