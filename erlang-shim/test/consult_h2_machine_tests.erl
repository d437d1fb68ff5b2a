%% EUnit and PropEr tests for consult_h2_machine, the pure HTTP/2 client
%% connection: frames in (as consult_h2 parses them), and the exact bytes
%% to send and events out. Run with `make -C erlang-shim eunit`.
-module(consult_h2_machine_tests).

-include_lib("eunit/include/eunit.hrl").

-export([prop_frames_never_crash/0]).

-define(RECV_WINDOW, 16#1000000).
-define(MAX_WINDOW, 16#7fffffff).
-define(REQUEST, [{<<":method">>, <<"POST">>}, {<<":scheme">>, <<"http">>}, {<<":path">>, <<"/x">>}]).

%%% Helpers

new() -> new(#{}).

new(Opts) ->
    {ok, _, M} = consult_h2_machine:new(Opts),
    M.

%% A machine with streams 1 and 3 open.
two_streams() ->
    {ok, 1, _, M1} = consult_h2_machine:open_stream(?REQUEST, new()),
    {ok, 3, _, M2} = consult_h2_machine:open_stream(?REQUEST, M1),
    M2.

%% Bytes as the peer would send them, parsed as the connection parses them.
frame(IoData) ->
    {ok, Frame, <<>>} = consult_h2:parse(iolist_to_binary(IoData), 16#ffffff),
    Frame.

%% One frame in: {Events, Bytes sent, Machine}.
in(IoData, M) ->
    {ok, Events, Send, M1} = consult_h2_machine:frame(frame(IoData), M),
    {Events, iolist_to_binary(Send), M1}.

%% Several frames in, each expected to be fine: all events and bytes, in order.
ins(Frames, M) ->
    lists:foldl(fun(F, {Es, Bs, MAcc}) ->
                        {E, B, M1} = in(F, MAcc),
                        {Es ++ E, <<Bs/binary, B/binary>>, M1}
                end, {[], <<>>, M}, Frames).

error_of(IoData, M) ->
    {error, Error, _} = consult_h2_machine:frame(frame(IoData), M),
    Error.

b(IoData) -> iolist_to_binary(IoData).

block(Headers) -> b(consult_hpack:encode(Headers)).

streams(M) -> maps:get(streams, consult_h2_machine:info(M)).

send(Id, Data, Fin, M) ->
    send(Id, Data, Fin, undefined, M).

send(Id, Data, Fin, Tag, M) ->
    {ok, Send, M1} = consult_h2_machine:send(Id, Data, Fin, Tag, M),
    {b(Send), M1}.

%%% Starting

preface_test() ->
    {ok, Send, M} = consult_h2_machine:new(#{}),
    ?assertEqual(b([consult_h2:preface(),
                    consult_h2:settings([{enable_push, 0}, {initial_window_size, ?RECV_WINDOW},
                                         {max_header_list_size, 65536}]),
                    consult_h2:window_update(0, ?RECV_WINDOW - 65535)]), b(Send)),
    ?assertMatch(#{streams := 0, next_stream_id := 1, send_window := 65535, recv_window := ?RECV_WINDOW,
                   peer_goaway := undefined,
                   peer_settings := #{max_concurrent_streams := infinity, header_table_size := 4096,
                                      max_frame_size := 16384, initial_window_size := 65535}},
                 consult_h2_machine:info(M)),
    ?assertEqual(16384, consult_h2_machine:max_frame_size(M)).

open_stream_test() ->
    {ok, 1, Send, M} = consult_h2_machine:open_stream(?REQUEST, new()),
    ?assertEqual(b(consult_h2:headers(1, consult_hpack:encode(?REQUEST), false, 16384)), b(Send)),
    {ok, 3, _, M1} = consult_h2_machine:open_stream(?REQUEST, M),
    ?assertMatch(#{streams := 2, next_stream_id := 5}, consult_h2_machine:info(M1)).

%%% SETTINGS

settings_exchange_test() ->
    {Events, Send, M} = in(consult_h2:settings([{max_frame_size, 20000}, {max_concurrent_streams, 7},
                                                {header_table_size, 0}, {initial_window_size, 1000},
                                                {enable_push, 0}, {max_header_list_size, 100}]), new()),
    ?assertEqual([], Events),
    ?assertEqual(b(consult_h2:settings_ack()), Send),
    ?assertEqual(#{max_frame_size => 20000, max_concurrent_streams => 7, header_table_size => 0,
                   initial_window_size => 1000},
                 maps:get(peer_settings, consult_h2_machine:info(M))),
    %% The peer's ACK of ours needs nothing.
    ?assertEqual({[], <<>>, M}, in(consult_h2:settings_ack(), M)).

%% A larger header block than the peer's frame size goes in CONTINUATIONs.
max_frame_size_splits_headers_test() ->
    {_, _, M} = in(consult_h2:settings([{max_frame_size, 20000}]), new()),
    Big = [{<<"x-pad">>, binary:copy(<<"p">>, 30000)}],
    {ok, 1, Send, _} = consult_h2_machine:open_stream(Big, M),
    ?assertEqual(b(consult_h2:headers(1, consult_hpack:encode(Big), false, 20000)), b(Send)).

%% SETTINGS_INITIAL_WINDOW_SIZE shifts the open streams' windows (6.9.2):
%% data waiting for it goes at once.
initial_window_size_shifts_streams_test() ->
    {_, _, M0} = in(consult_h2:settings([{initial_window_size, 0}]), new()),
    {ok, 1, _, M1} = consult_h2_machine:open_stream(?REQUEST, M0),
    {<<>>, M2} = send(1, <<"hello">>, nofin, M1),
    {[], Send, _} = in(consult_h2:settings([{initial_window_size, 3}]), M2),
    ?assertEqual(b([consult_h2:settings_ack(), consult_h2:data(1, <<"hel">>, false)]), Send).

initial_window_size_overflow_test() ->
    M = two_streams(),
    {[], _, M1} = in(consult_h2:window_update(3, ?MAX_WINDOW - 65535), M),
    ?assertEqual({connection_error, flow_control_error, {window_overflow, 3, ?MAX_WINDOW + 1}},
                 error_of(consult_h2:settings([{initial_window_size, 65536}]), M1)).

%%% Sending within the windows

data_waits_for_window_update_test() ->
    {ok, 1, _, M0} = consult_h2_machine:open_stream(?REQUEST, new()),
    Body = binary:copy(<<"a">>, 70000),
    {Sent, M1} = send(1, Body, fin, M0),
    %% The default windows: 65535 bytes, in frames of at most 16384.
    <<First:16384/binary, Second:16384/binary, Third:16384/binary, Fourth:16383/binary, Rest/binary>> = Body,
    ?assertEqual(b([consult_h2:data(1, First, false), consult_h2:data(1, Second, false),
                    consult_h2:data(1, Third, false), consult_h2:data(1, Fourth, false)]), Sent),
    ?assertMatch(#{send_window := 0}, consult_h2_machine:info(M1)),
    %% The stream's window alone is not enough, nor the connection's alone.
    {[], <<>>, M2} = in(consult_h2:window_update(1, 10000), M1),
    {[], Send, M3} = in(consult_h2:window_update(0, 10000), M2),
    ?assertEqual(b(consult_h2:data(1, Rest, true)), Send),
    ?assertMatch(#{send_window := 10000 - 4465}, consult_h2_machine:info(M3)).

%% Sends are counted by tag while any of them waits.
queued_by_tag_test() ->
    {_, _, M0} = in(consult_h2:settings([{initial_window_size, 0}]), new()),
    {ok, 1, _, M1} = consult_h2_machine:open_stream(?REQUEST, M0),
    {<<>>, M2} = send(1, <<"12345">>, nofin, notify, M1),
    {<<>>, M3} = send(1, <<"67890">>, nofin, notify, M2),
    {<<>>, M4} = send(1, <<"other">>, nofin, M3),
    ?assertEqual(2, consult_h2_machine:queued(1, notify, M4)),
    {[], Send, M5} = in(consult_h2:window_update(1, 7), M4),
    ?assertEqual(b(consult_h2:data(1, <<"1234567">>, false)), Send),
    ?assertEqual(1, consult_h2_machine:queued(1, notify, M5)),
    {[], _, M6} = in(consult_h2:window_update(1, 100), M5),
    ?assertEqual(0, consult_h2_machine:queued(1, notify, M6)),
    ?assertEqual(0, consult_h2_machine:queued(9, notify, M6)).

window_update_overflow_test_() ->
    M = two_streams(),
    %% Connection level: the connection goes.
    [?_assertEqual({connection_error, flow_control_error, {window_overflow, 0, 65535 + ?MAX_WINDOW}},
                   error_of(consult_h2:window_update(0, ?MAX_WINDOW), M)),
     %% Stream level: that stream goes (RST_STREAM), the connection stays.
     ?_assertMatch({[{stream_error, 3, flow_control_error, {window_overflow, 3}}], _, _},
                   in(consult_h2:window_update(3, ?MAX_WINDOW), M)),
     ?_assertEqual(b(consult_h2:rst_stream(3, flow_control_error)),
                   element(2, in(consult_h2:window_update(3, ?MAX_WINDOW), M))),
     ?_assertEqual(1, streams(element(3, in(consult_h2:window_update(3, ?MAX_WINDOW), M)))),
     %% A stream that is over: nothing.
     ?_assertEqual({[], <<>>, M}, in(consult_h2:window_update(7, 5), M))].

%%% Receiving within our windows

receive_window_given_back_test() ->
    {ok, 1, _, M0} = consult_h2_machine:open_stream(?REQUEST, new()),
    Chunk = binary:copy(<<"d">>, 16384),
    Frames = [consult_h2:data(1, Chunk, false) || _ <- lists:seq(1, 64)],
    {Events, Send, M1} = ins(Frames, M0),
    ?assertEqual(64, length(Events)),
    ?assertEqual({data, 1, nofin, Chunk}, hd(Events)),
    %% 1 MiB consumed: both windows are given back, in one step each.
    ?assertEqual(b([consult_h2:window_update(0, 16#100000), consult_h2:window_update(1, 16#100000)]), Send),
    ?assertMatch(#{recv_window := ?RECV_WINDOW}, consult_h2_machine:info(M1)).

%% Data of a stream that is over still counts for the connection (and is
%% given back); padding counts too.
receive_window_exceeded_test() ->
    Chunk = binary:copy(<<"d">>, 16384),
    {[], Send, M1} = ins([consult_h2:data(9, Chunk, false) || _ <- lists:seq(1, 64)], new()),
    ?assertEqual(b(consult_h2:window_update(0, 16#100000)), Send),
    {[], <<>>, M2} = in(<<10:24, 0, 8, 0:1, 9:31, 9, 0:72>>, M1),
    ?assertMatch(#{recv_window := ?RECV_WINDOW - 10}, consult_h2_machine:info(M2)),
    %% A peer that ignores the window we gave.
    ?assertEqual({error, {connection_error, flow_control_error,
                          {receive_window_exceeded, ?RECV_WINDOW, ?RECV_WINDOW - 10}}, M2},
                 consult_h2_machine:frame({data, 9, false, <<>>, ?RECV_WINDOW}, M2)).

data_end_stream_test() ->
    M = two_streams(),
    {Events, <<>>, M1} = in(consult_h2:data(3, <<"bye">>, true), M),
    ?assertEqual([{data, 3, fin, <<"bye">>}], Events),
    ?assertEqual(1, streams(M1)),
    %% After its end the stream takes nothing more.
    ?assertMatch({[], <<>>, _}, in(consult_h2:data(3, <<"late">>, false), M1)),
    ?assertEqual({ok, [], M1}, consult_h2_machine:send(3, <<"x">>, nofin, undefined, M1)).

%%% PING

ping_ack_test_() ->
    M = new(),
    [?_assertEqual({[], b(consult_h2:ping_ack(<<"12345678">>)), M}, in(consult_h2:ping(<<"12345678">>), M)),
     ?_assertEqual({[{ping_ack, <<"abcdefgh">>}], <<>>, M}, in(consult_h2:ping_ack(<<"abcdefgh">>), M)),
     ?_assertEqual({ok, b(consult_h2:ping(<<"abcdefgh">>)), M},
                   (fun() -> {ok, S, M1} = consult_h2_machine:ping(<<"abcdefgh">>, M), {ok, b(S), M1} end)())].

%%% GOAWAY

goaway_last_stream_id_test() ->
    {ok, 5, _, M} = consult_h2_machine:open_stream(?REQUEST, two_streams()),
    {Events, <<>>, M1} = in(consult_h2:goaway(3, no_error, <<"bye">>), M),
    %% What the peer took (1 and 3) it still answers; 5 it never will.
    ?assertEqual([{goaway, 3, no_error, <<"bye">>, [5]}], Events),
    ?assertEqual(2, streams(M1)),
    ?assertMatch(#{peer_goaway := 3}, consult_h2_machine:info(M1)),
    ?assertEqual({error, goaway}, consult_h2_machine:open_stream(?REQUEST, M1)),
    {[{data, 3, nofin, <<"owed">>}], _, M2} = in(consult_h2:data(3, <<"owed">>, false), M1),
    %% A later GOAWAY can only lower the last stream id.
    {[{goaway, 1, protocol_error, <<>>, [3]}], <<>>, M3} = in(consult_h2:goaway(1, protocol_error, <<>>), M2),
    {[{goaway, 9, no_error, <<>>, []}], <<>>, M4} = in(consult_h2:goaway(9, no_error, <<>>), M3),
    ?assertMatch(#{peer_goaway := 1, streams := 1}, consult_h2_machine:info(M4)).

our_goaway_test() ->
    {ok, Send, _} = consult_h2_machine:goaway(no_error, new()),
    ?assertEqual(b(consult_h2:goaway(0, no_error, <<>>)), b(Send)).

%%% RST_STREAM

rst_stream_test() ->
    M = two_streams(),
    {Events, <<>>, M1} = in(consult_h2:rst_stream(3, cancel), M),
    ?assertEqual([{rst_stream, 3, cancel}], Events),
    ?assertEqual(1, streams(M1)),
    ?assertEqual({[], <<>>, M1}, in(consult_h2:rst_stream(3, cancel), M1)),
    %% Ours: the peer is told, the stream forgotten.
    {ok, Send, M2} = consult_h2_machine:reset_stream(1, cancel, M1),
    ?assertEqual(b(consult_h2:rst_stream(1, cancel)), b(Send)),
    ?assertEqual(0, streams(M2)),
    ?assertEqual({ok, [], M2}, consult_h2_machine:reset_stream(1, cancel, M2)).

%% A stream-level error from the parser: that stream is reset, the
%% connection goes on; a connection-level one ends the connection.
stream_vs_connection_error_test() ->
    M = two_streams(),
    Zero = fun(Id) -> <<4:24, 8, 0, 0:1, Id:31, 0:32>> end,
    {Events, Send, M1} = in(Zero(3), M),
    ?assertEqual([{stream_error, 3, protocol_error, zero_window_increment}], Events),
    ?assertEqual(b(consult_h2:rst_stream(3, protocol_error)), Send),
    {[{data, 1, nofin, <<"still">>}], _, _} = in(consult_h2:data(1, <<"still">>, false), M1),
    ?assertEqual({error, {connection_error, protocol_error, zero_window_increment}},
                 consult_h2:parse(Zero(0), 16384)),
    %% An error of a stream we do not have: the RST_STREAM only.
    ?assertEqual({[], b(consult_h2:rst_stream(7, protocol_error)), M}, in(Zero(7), M)).

%%% HEADERS, CONTINUATION and trailers

headers_then_trailers_test() ->
    M = two_streams(),
    Response = [{<<":status">>, <<"200">>}, {<<"content-type">>, <<"application/grpc">>}],
    {[{headers, 3, nofin, Response}], <<>>, M1} = in(consult_h2:headers(3, block(Response), false, 16384), M),
    {[{data, 3, nofin, <<"m">>}], <<>>, M2} = in(consult_h2:data(3, <<"m">>, false), M1),
    Trailers = [{<<"grpc-status">>, <<"0">>}],
    {[{trailers, 3, Trailers}], <<>>, M3} = in(consult_h2:headers(3, block(Trailers), true, 16384), M2),
    ?assertEqual(1, streams(M3)).

trailers_only_test() ->
    M = two_streams(),
    Only = [{<<":status">>, <<"200">>}, {<<"grpc-status">>, <<"16">>}],
    ?assertMatch({[{headers, 1, fin, Only}], <<>>, _}, in(consult_h2:headers(1, block(Only), true, 16384), M)).

continuation_test() ->
    M = two_streams(),
    Headers = [{<<":status">>, <<"200">>}, {<<"x-long">>, binary:copy(<<"v">>, 100)}],
    <<A:10/binary, B:10/binary, C/binary>> = block(Headers),
    {[], <<>>, M1} = in(<<(byte_size(A)):24, 1, 0, 0:1, 3:31, A/binary>>, M),
    {[], <<>>, M2} = in(<<(byte_size(B)):24, 9, 0, 0:1, 3:31, B/binary>>, M1),
    ?assertEqual({[{headers, 3, nofin, Headers}], <<>>, element(3, in(consult_h2:headers(3, block(Headers), false, 16384), M))},
                 in(<<(byte_size(C)):24, 9, 4, 0:1, 3:31, C/binary>>, M2)).

%% Between HEADERS and its last CONTINUATION nothing else may come (6.10).
continuation_errors_test_() ->
    M = two_streams(),
    {[], <<>>, Open} = in(<<1:24, 1, 0, 0:1, 3:31, 16#88>>, M),
    [?_assertEqual({connection_error, protocol_error, expected_continuation},
                   error_of(consult_h2:ping(<<"12345678">>), Open)),
     ?_assertEqual({connection_error, protocol_error, expected_continuation},
                   error_of(<<0:24, 9, 4, 0:1, 1:31>>, Open)),
     ?_assertEqual({connection_error, protocol_error, unexpected_continuation},
                   error_of(<<0:24, 9, 4, 0:1, 3:31>>, M))].

%% A header block over 64 KiB ends the connection without waiting for its
%% end; so does a small block that decodes to too large a list.
header_limits_test_() ->
    M = two_streams(),
    Part = binary:copy(<<0>>, 16384),
    Fragments = [<<16384:24, 1, 0, 0:1, 3:31, Part/binary>> | [<<16384:24, 9, 0, 0:1, 3:31, Part/binary>> || _ <- [1, 2, 3]]],
    {[], <<>>, Full} = ins(Fragments, M),
    %% ":method: GET" (static index 2) weighs 42 octets; 1600 of them 67200.
    Many = binary:copy(<<16#82>>, 1600),
    [?_assertEqual({connection_error, enhance_your_calm, {header_block_too_large, 65537}},
                   error_of(<<1:24, 9, 0, 0:1, 3:31, 0>>, Full)),
     ?_assertEqual({connection_error, enhance_your_calm, header_list_too_large},
                   error_of(<<(byte_size(Many)):24, 1, 4, 0:1, 3:31, Many/binary>>, M)),
     ?_assertMatch({connection_error, compression_error, {hpack, _}},
                   error_of(<<1:24, 1, 4, 0:1, 3:31, 16#bf>>, M))].

%% Header blocks of streams that are over are still decoded: the HPACK
%% table must stay in sync.
hpack_in_sync_test() ->
    M = two_streams(),
    Indexed = <<16#40, 5, "x-new", 3, "one">>,  %% literal with incremental indexing
    {[], <<>>, M1} = in(<<(byte_size(Indexed)):24, 1, 4, 0:1, 9:31, Indexed/binary>>, M),
    Ref = <<16#be>>,  %% dynamic table entry 62
    ?assertMatch({[{headers, 3, nofin, [{<<"x-new">>, <<"one">>}]}], <<>>, _},
                 in(<<1:24, 1, 4, 0:1, 3:31, Ref/binary>>, M1)).

%%% Stream ids and concurrency

stream_ids_run_out_test() ->
    M = new(#{max_stream_id => 3}),
    {ok, 1, _, M1} = consult_h2_machine:open_stream(?REQUEST, M),
    {ok, 3, _, M2} = consult_h2_machine:open_stream(?REQUEST, M1),
    ?assertEqual({error, stream_ids_exhausted}, consult_h2_machine:open_stream(?REQUEST, M2)).

max_concurrent_streams_test() ->
    {_, _, M} = in(consult_h2:settings([{max_concurrent_streams, 2}]), new()),
    {ok, 1, _, M1} = consult_h2_machine:open_stream(?REQUEST, M),
    {ok, 3, _, M2} = consult_h2_machine:open_stream(?REQUEST, M1),
    ?assertEqual({error, too_many_streams}, consult_h2_machine:open_stream(?REQUEST, M2)),
    {_, _, M3} = in(consult_h2:rst_stream(3, refused_stream), M2),
    ?assertMatch({ok, 5, _, _}, consult_h2_machine:open_stream(?REQUEST, M3)).

ignored_frames_test_() ->
    M = two_streams(),
    [?_assertEqual({[], <<>>, M}, in(<<5:24, 2, 0, 0:1, 3:31, 0:1, 1:31, 9>>, M)),   %% PRIORITY
     ?_assertEqual({[], <<>>, M}, in(<<1:24, 16#fa, 0, 0:1, 0:31, "?">>, M))].      %% unknown type

%%% PropEr

proper_test_() ->
    consult_properties:tests(?MODULE, [prop_frames_never_crash], 500, 120).

%% Any sequence of frames, valid or not for the state it meets: the machine
%% answers each with ok or a connection error (which ends the connection),
%% never an exception; its windows stay within their bounds.
prop_frames_never_crash() ->
    proper:forall({proper_types:list(proper_types:union([stream_op(), frame_gen()])),
                   proper_types:integer(1, 20)},
                  fun({Ops, MaxId}) -> run(Ops, new(#{max_stream_id => MaxId})) end).

run([], _M) ->
    true;
run([{open, Headers} | Ops], M) ->
    case consult_h2_machine:open_stream(Headers, M) of
        {ok, _Id, _Send, M1} -> run(Ops, M1);
        {error, _} -> run(Ops, M)
    end;
run([{send, Id, Data, Fin} | Ops], M) ->
    {ok, _Send, M1} = consult_h2_machine:send(Id, Data, Fin, notify, M),
    run(Ops, M1);
run([{reset, Id} | Ops], M) ->
    {ok, _, M1} = consult_h2_machine:reset_stream(Id, cancel, M),
    run(Ops, M1);
run([{frame, <<>>} | Ops], M) ->
    run(Ops, M);
run([{frame, Bin} | Ops], M) ->
    case consult_h2:parse(Bin, 16#ffffff) of
        {ok, Frame, Rest} ->
            case consult_h2_machine:frame(Frame, M) of
                {ok, Events, Send, M1} ->
                    is_list(Events) andalso is_binary(iolist_to_binary(Send)) andalso windows_ok(M1)
                        andalso run([{frame, Rest} | Ops], M1);
                {error, {connection_error, _, _}, _} ->
                    true
            end;
        _ ->
            run(Ops, M)
    end.

windows_ok(M) ->
    #{send_window := S, recv_window := R} = consult_h2_machine:info(M),
    S =< ?MAX_WINDOW andalso R >= 0 andalso R =< ?RECV_WINDOW.

%% Mostly streams the machine may have open (odd ids), sometimes others.
stream_id() ->
    proper_types:weighted_union([{6, proper_types:elements([1, 3, 5, 7])}, {1, proper_types:integer(0, 9)}]).

stream_op() ->
    proper_types:union(
      [{open, proper_types:list({proper_types:binary(), proper_types:binary()})},
       {send, stream_id(), proper_types:binary(), proper_types:elements([fin, nofin])},
       {reset, stream_id()}]).

frame_gen() ->
    Bytes = proper_types:binary(),
    Raw = fun(T, F, I, P) -> <<(byte_size(P)):24, T, F, 0:1, I:31, P/binary>> end,
    Flag = fun(true, Bit) -> Bit; (false, _) -> 0 end,
    Headers = proper_types:list({proper_types:binary(), proper_types:binary()}),
    Frames = proper_types:weighted_union(
               [{4, proper_types:bind({stream_id(), Bytes, proper_types:bool()},
                                      fun({I, B, ES}) -> Raw(0, Flag(ES, 1), I, B) end, false)},
                %% HEADERS with a valid block, mostly complete; sometimes CONTINUATIONs.
                {4, proper_types:bind({stream_id(), Headers, proper_types:bool(), proper_types:integer(1, 4)},
                                      fun({I, H, ES, Parts}) -> header_frames(I, H, ES, Parts) end, false)},
                %% A CONTINUATION on its own, a HEADERS without its end.
                {1, proper_types:bind({stream_id(), Headers, proper_types:integer(0, 1), proper_types:bool()},
                                      fun({I, H, T, EH}) ->
                                              Raw(1 + 8 * T, Flag(EH, 4), I, iolist_to_binary(consult_hpack:encode(H)))
                                      end, false)},
                %% A complete block of random bytes: mostly an HPACK error.
                {1, proper_types:bind({stream_id(), Bytes, proper_types:integer(0, 1)},
                                      fun({I, B, ES}) -> Raw(1, 4 bor ES, I, B) end, false)},
                {2, proper_types:bind({stream_id(), proper_types:integer(0, 13)},
                                      fun({I, C}) -> Raw(3, 0, I, <<C:32>>) end, false)},
                {2, proper_types:bind(proper_types:list({proper_types:integer(1, 6),
                                                         proper_types:union([proper_types:integer(0, 100000),
                                                                             proper_types:integer(0, 16#7fffffff)])}),
                                      fun(L) -> Raw(4, 0, 0, << <<K:16, V:32>> || {K, V} <- L >>) end, false)},
                {1, proper_types:bind(proper_types:binary(8), fun(O) -> Raw(6, 0, 0, O) end, false)},
                {1, proper_types:bind(proper_types:binary(8), fun(O) -> Raw(6, 1, 0, O) end, false)},
                {1, proper_types:bind({proper_types:integer(0, 9), proper_types:integer(0, 13), Bytes},
                                      fun({L, C, D}) -> Raw(7, 0, 0, <<0:1, L:31, C:32, D/binary>>) end, false)},
                {3, proper_types:bind({proper_types:union([0, stream_id()]),
                                       proper_types:union([proper_types:integer(0, 100000),
                                                           proper_types:integer(0, 16#7fffffff)])},
                                      fun({I, Inc}) -> Raw(8, 0, I, <<0:1, Inc:31>>) end, false)},
                {1, proper_types:bind({stream_id(), proper_types:integer(0, 255)},
                                      fun({I, T}) -> Raw(2, 0, I, <<T:40>>) end, false)}]),
    proper_types:bind(Frames, fun(Bin) -> {frame, Bin} end, false).

%% A valid header block as HEADERS and CONTINUATIONs.
header_frames(Id, Headers, EndStream, Parts) ->
    Block = iolist_to_binary(consult_hpack:encode(Headers)),
    Size = max(1, byte_size(Block) div Parts),
    iolist_to_binary(consult_h2:headers(Id, Block, EndStream, Size)).
