%% EUnit and PropEr tests for consult_h2, the HTTP/2 frame parser and
%% encoders (RFC 7540 sections 4 and 6). Run with `make -C erlang-shim eunit`.
%%
%% Frames are written here byte by byte (raw/4), not with consult_h2's own
%% encoders, except where the encoders themselves are under test.
-module(consult_h2_tests).

-include_lib("eunit/include/eunit.hrl").

-export([prop_split_anywhere_parses_the_same/0, prop_encoders_round_trip/0,
         prop_random_bytes_never_crash/0]).

-define(MAX, 16384).

raw(Type, Flags, Id, Payload) ->
    <<(byte_size(Payload)):24, Type:8, Flags:8, 0:1, Id:31, Payload/binary>>.

parse(Bin) -> consult_h2:parse(Bin, ?MAX).

%%% One frame of each type

data_test_() ->
    [?_assertEqual({ok, {data, 1, false, <<"abc">>, 3}, <<>>}, parse(raw(0, 0, 1, <<"abc">>))),
     ?_assertEqual({ok, {data, 3, true, <<>>, 0}, <<"rest">>},
                   parse(<<(raw(0, 1, 3, <<>>))/binary, "rest">>)),
     %% Padded: the flow-controlled length is the whole payload (6.9.1).
     ?_assertEqual({ok, {data, 1, false, <<"abc">>, 7}, <<>>},
                   parse(raw(0, 8, 1, <<3, "abc", 0, 0, 0>>))),
     ?_assertEqual({ok, {data, 1, true, <<>>, 4}, <<>>}, parse(raw(0, 9, 1, <<3, 0, 0, 0>>)))].

headers_test_() ->
    [?_assertEqual({ok, {headers, 1, true, true, <<"block">>}, <<>>},
                   parse(raw(1, 16#5, 1, <<"block">>))),
     ?_assertEqual({ok, {headers, 1, false, false, <<"part">>}, <<>>}, parse(raw(1, 0, 1, <<"part">>))),
     %% PRIORITY flag: 5 bytes of priority before the fragment; with PADDED too.
     ?_assertEqual({ok, {headers, 5, false, true, <<"blk">>}, <<>>},
                   parse(raw(1, 16#24, 5, <<0:1, 3:31, 16, "blk">>))),
     ?_assertEqual({ok, {headers, 5, false, true, <<"blk">>}, <<>>},
                   parse(raw(1, 16#2c, 5, <<2, 0:1, 3:31, 16, "blk", 0, 0>>))),
     %% A stream that depends on itself: an error of that stream only (5.3.1).
     ?_assertEqual({ok, {stream_error, 5, protocol_error, depends_on_itself}, <<>>},
                   parse(raw(1, 16#24, 5, <<0:1, 5:31, 16, "blk">>))),
     ?_assertEqual({error, {connection_error, frame_size_error, short_headers}},
                   parse(raw(1, 16#24, 5, <<0, 0, 0>>)))].

priority_test_() ->
    [?_assertEqual({ok, {priority, 3}, <<>>}, parse(raw(2, 0, 3, <<0:1, 1:31, 200>>))),
     ?_assertEqual({ok, {stream_error, 3, protocol_error, depends_on_itself}, <<>>},
                   parse(raw(2, 0, 3, <<0:1, 3:31, 200>>))),
     ?_assertEqual({ok, {stream_error, 3, frame_size_error, bad_priority_length}, <<>>},
                   parse(raw(2, 0, 3, <<1, 2, 3, 4>>)))].

rst_stream_test_() ->
    [?_assertEqual({ok, {rst_stream, 3, cancel}, <<>>}, parse(raw(3, 0, 3, <<8:32>>))),
     ?_assertEqual({ok, {rst_stream, 3, {unknown, 99}}, <<>>}, parse(raw(3, 0, 3, <<99:32>>))),
     ?_assertMatch({error, {connection_error, frame_size_error, _}}, parse(raw(3, 0, 3, <<8:24>>)))].

settings_test_() ->
    [?_assertEqual({ok, {settings, [{header_table_size, 0}, {enable_push, 0},
                                    {max_concurrent_streams, 100}, {initial_window_size, 16#7fffffff},
                                    {max_frame_size, 16#ffffff}, {max_header_list_size, 8192},
                                    {{unknown, 99}, 1}]}, <<>>},
                   parse(raw(4, 0, 0, <<1:16, 0:32, 2:16, 0:32, 3:16, 100:32, 4:16, 16#7fffffff:32,
                                        5:16, 16#ffffff:32, 6:16, 8192:32, 99:16, 1:32>>))),
     ?_assertEqual({ok, {settings, []}, <<>>}, parse(raw(4, 0, 0, <<>>))),
     ?_assertEqual({ok, settings_ack, <<>>}, parse(raw(4, 1, 0, <<>>))),
     ?_assertMatch({error, {connection_error, frame_size_error, _}}, parse(raw(4, 1, 0, <<0:48>>))),
     ?_assertMatch({error, {connection_error, frame_size_error, _}}, parse(raw(4, 0, 0, <<0:40>>))),
     ?_assertMatch({error, {connection_error, protocol_error, _}}, parse(raw(4, 0, 1, <<>>))),
     %% Values out of range (6.5.2).
     ?_assertMatch({error, {connection_error, protocol_error, {bad_enable_push, 2}}},
                   parse(raw(4, 0, 0, <<2:16, 2:32>>))),
     ?_assertMatch({error, {connection_error, flow_control_error, _}},
                   parse(raw(4, 0, 0, <<4:16, 16#80000000:32>>))),
     ?_assertMatch({error, {connection_error, protocol_error, {bad_max_frame_size, 16383}}},
                   parse(raw(4, 0, 0, <<5:16, 16383:32>>))),
     ?_assertMatch({error, {connection_error, protocol_error, _}},
                   parse(raw(4, 0, 0, <<5:16, 16#1000000:32>>)))].

push_promise_is_refused_test() ->
    ?assertMatch({error, {connection_error, protocol_error, push_promise}},
                 parse(raw(5, 4, 1, <<0:1, 2:31, "blk">>))).

ping_test_() ->
    [?_assertEqual({ok, {ping, <<1, 2, 3, 4, 5, 6, 7, 8>>}, <<>>}, parse(raw(6, 0, 0, <<1, 2, 3, 4, 5, 6, 7, 8>>))),
     ?_assertEqual({ok, {ping_ack, <<0:64>>}, <<>>}, parse(raw(6, 1, 0, <<0:64>>))),
     ?_assertMatch({error, {connection_error, frame_size_error, _}}, parse(raw(6, 0, 0, <<0:56>>))),
     ?_assertMatch({error, {connection_error, frame_size_error, _}}, parse(raw(6, 0, 0, <<0:72>>))),
     ?_assertMatch({error, {connection_error, protocol_error, _}}, parse(raw(6, 0, 1, <<0:64>>)))].

goaway_test_() ->
    [?_assertEqual({ok, {goaway, 7, no_error, <<>>}, <<>>}, parse(raw(7, 0, 0, <<1:1, 7:31, 0:32>>))),
     ?_assertEqual({ok, {goaway, 16#7fffffff, enhance_your_calm, <<"too_many_pings">>}, <<>>},
                   parse(raw(7, 0, 0, <<0:1, 16#7fffffff:31, 11:32, "too_many_pings">>))),
     ?_assertMatch({error, {connection_error, frame_size_error, _}}, parse(raw(7, 0, 0, <<0:56>>))),
     ?_assertMatch({error, {connection_error, protocol_error, _}}, parse(raw(7, 0, 3, <<0:64>>)))].

window_update_test_() ->
    [?_assertEqual({ok, {window_update, 0, 16#7fffffff}, <<>>},
                   parse(raw(8, 0, 0, <<1:1, 16#7fffffff:31>>))),  % the reserved bit is ignored
     ?_assertEqual({ok, {window_update, 5, 1}, <<>>}, parse(raw(8, 0, 5, <<1:32>>))),
     %% An increment of 0: on the connection, a connection error; on a stream,
     %% an error of that stream (6.9).
     ?_assertEqual({error, {connection_error, protocol_error, zero_window_increment}},
                   parse(raw(8, 0, 0, <<0:32>>))),
     ?_assertEqual({ok, {stream_error, 5, protocol_error, zero_window_increment}, <<>>},
                   parse(raw(8, 0, 5, <<0:32>>))),
     ?_assertMatch({error, {connection_error, frame_size_error, _}}, parse(raw(8, 0, 0, <<1:24>>))),
     ?_assertMatch({error, {connection_error, frame_size_error, _}}, parse(raw(8, 0, 0, <<1:40>>)))].

continuation_test_() ->
    [?_assertEqual({ok, {continuation, 1, true, <<"end">>}, <<>>}, parse(raw(9, 4, 1, <<"end">>))),
     ?_assertEqual({ok, {continuation, 1, false, <<>>}, <<>>}, parse(raw(9, 0, 1, <<>>)))].

unknown_types_are_ignored_test() ->
    ?assertEqual({ok, {unknown, 16#fa, 3}, <<"x">>}, parse(<<(raw(16#fa, 16#ff, 3, <<"?">>))/binary, "x">>)).

%% Frames that belong to a stream may not come on stream 0 (6.x).
stream_zero_test_() ->
    [?_assertMatch({error, {connection_error, protocol_error, {stream_zero, _}}}, parse(raw(T, 0, 0, P)))
     || {T, P} <- [{0, <<"d">>}, {1, <<"h">>}, {2, <<0:40>>}, {3, <<0:32>>}, {5, <<0:32>>}, {9, <<"c">>}]].

%%% Sizes and padding

oversized_frame_test_() ->
    Header = fun(Len) -> <<Len:24, 0:8, 0:8, 1:32>> end,
    [%% Refused as soon as the length is known, before the payload arrives.
     ?_assertEqual({error, {connection_error, frame_size_error, {frame_too_large, ?MAX + 1}}},
                   parse(Header(?MAX + 1))),
     ?_assertEqual({error, {connection_error, frame_size_error, {frame_too_large, 16#ffffff}}},
                   parse(<<16#ff, 16#ff, 16#ff>>)),
     ?_assertEqual(more, parse(<<16#ff, 16#ff>>)),
     %% Exactly the maximum is fine; it waits for all of it.
     ?_assertEqual(more, parse(Header(?MAX))),
     ?_assertMatch({ok, {data, 1, false, _, ?MAX}, <<>>},
                   parse(<<(Header(?MAX))/binary, (binary:copy(<<0>>, ?MAX))/binary>>)),
     ?_assertMatch({ok, {data, 1, false, _, 20000}, <<>>},
                   consult_h2:parse(raw(0, 0, 1, binary:copy(<<0>>, 20000)), 20000))].

bad_padding_test_() ->
    %% Padding as long as what follows the pad length, or longer: PROTOCOL_ERROR.
    [?_assertEqual({ok, {data, 1, false, <<>>, 4}, <<>>}, parse(raw(0, 8, 1, <<3, 0, 0, 0>>))),
     ?_assertMatch({error, {connection_error, protocol_error, {bad_padding, 4, 4}}},
                   parse(raw(0, 8, 1, <<4, 0, 0, 0>>))),
     ?_assertMatch({error, {connection_error, protocol_error, {bad_padding, 255, 1}}},
                   parse(raw(0, 8, 1, <<255>>))),
     ?_assertMatch({error, {connection_error, frame_size_error, padded_without_length}},
                   parse(raw(0, 8, 1, <<>>))),
     ?_assertMatch({error, {connection_error, protocol_error, {bad_padding, 10, 5}}},
                   parse(raw(1, 12, 1, <<10, "abcd">>)))].

incomplete_test_() ->
    Frame = raw(0, 0, 1, <<"hello">>),
    [?_assertEqual(more, parse(binary:part(Frame, 0, N))) || N <- lists:seq(0, byte_size(Frame) - 1)].

%%% Encoders

encoders_test_() ->
    One = fun(IoData) -> {ok, F, <<>>} = parse(iolist_to_binary(IoData)), F end,
    [?_assertEqual(<<"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n">>, consult_h2:preface()),
     ?_assertEqual({settings, [{enable_push, 0}, {initial_window_size, 16#1000000},
                               {max_header_list_size, 65536}]},
                   One(consult_h2:settings([{enable_push, 0}, {initial_window_size, 16#1000000},
                                            {max_header_list_size, 65536}]))),
     ?_assertEqual(settings_ack, One(consult_h2:settings_ack())),
     ?_assertEqual({ping, <<"12345678">>}, One(consult_h2:ping(<<"12345678">>))),
     ?_assertEqual({ping_ack, <<"12345678">>}, One(consult_h2:ping_ack(<<"12345678">>))),
     ?_assertEqual({goaway, 0, enhance_your_calm, <<"why">>}, One(consult_h2:goaway(0, enhance_your_calm, <<"why">>))),
     ?_assertEqual({rst_stream, 7, flow_control_error}, One(consult_h2:rst_stream(7, flow_control_error))),
     ?_assertEqual({window_update, 0, 16#7fffffff}, One(consult_h2:window_update(0, 16#7fffffff))),
     ?_assertEqual({data, 3, true, <<"x">>, 1}, One(consult_h2:data(3, [<<"x">>], true))),
     ?_assertEqual({headers, 3, true, true, <<"blk">>}, One(consult_h2:headers(3, <<"blk">>, true, ?MAX)))].

%% A block longer than the peer's frame size: HEADERS, then CONTINUATIONs,
%% END_HEADERS on the last only, END_STREAM on the HEADERS.
headers_split_into_continuations_test() ->
    Block = binary:copy(<<"b">>, 2 * ?MAX + 10),
    Frames = all_frames(iolist_to_binary(consult_h2:headers(9, Block, true, ?MAX))),
    ?assertMatch([{headers, 9, true, false, _}, {continuation, 9, false, _}, {continuation, 9, true, _}], Frames),
    ?assertEqual(Block, iolist_to_binary([element(tuple_size(F), F) || F <- Frames])).

all_frames(Bin) ->
    case parse(Bin) of
        {ok, F, Rest} -> [F | all_frames(Rest)];
        more when Bin =:= <<>> -> []
    end.

%%% PropEr

proper_test_() ->
    consult_properties:tests(?MODULE, [prop_split_anywhere_parses_the_same, prop_encoders_round_trip, prop_random_bytes_never_crash],
                             500, 120).

%% A stream of valid frames cut into arbitrary pieces, fed as they come (the
%% way TCP delivers them), gives the same frames as the whole.
prop_split_anywhere_parses_the_same() ->
    proper:forall({proper_types:list(valid_frame()), proper_types:list(proper_types:integer(0, 100))},
                  fun({Frames, Cuts}) ->
                          Bin = iolist_to_binary(Frames),
                          Whole = all_frames(Bin),
                          length(Whole) =:= length(Frames) andalso
                              feed(pieces(Bin, Cuts), <<>>, []) =:= Whole
                  end).

feed([], <<>>, Acc) ->
    lists:reverse(Acc);
feed([], _Leftover, _Acc) ->
    incomplete;
feed([Piece | Pieces], Buf, Acc) ->
    {Frames, Rest} = drain(<<Buf/binary, Piece/binary>>, []),
    feed(Pieces, Rest, lists:reverse(Frames, Acc)).

drain(Buf, Acc) ->
    case parse(Buf) of
        {ok, F, Rest} -> drain(Rest, [F | Acc]);
        more -> {lists:reverse(Acc), Buf}
    end.

pieces(Bin, []) ->
    [Bin];
pieces(Bin, [Cut | Cuts]) when Cut < byte_size(Bin) ->
    <<Piece:Cut/binary, Rest/binary>> = Bin,
    [Piece | pieces(Rest, Cuts)];
pieces(Bin, _) ->
    [Bin].

valid_frame() ->
    Id = proper_types:integer(1, 16#7fffffff),
    Bytes = proper_types:binary(),
    proper_types:union(
      [data_frame(Id, Bytes),
       proper_types:bind({Id, Bytes, proper_types:integer(0, 16#25)},
                         fun({I, B, F}) -> raw(1, F band 16#5, I, B) end, false),
       proper_types:bind(proper_types:list({proper_types:integer(6, 100), proper_types:integer(0, 16#ffffffff)}),
                         fun(L) -> raw(4, 0, 0, << <<K:16, V:32>> || {K, V} <- L >>) end, false),
       proper_types:bind(proper_types:integer(0, 16#ffffffffffffffff),
                         fun(O) -> raw(6, 0, 0, <<O:64>>) end, false),
       proper_types:bind({proper_types:integer(0, 16#7fffffff), proper_types:integer(1, 16#7fffffff)},
                         fun({I, Inc}) -> raw(8, 0, I, <<0:1, Inc:31>>) end, false),
       proper_types:bind({proper_types:integer(0, 16#7fffffff), proper_types:integer(0, 13), Bytes},
                         fun({L, C, D}) -> raw(7, 0, 0, <<0:1, L:31, C:32, D/binary>>) end, false),
       proper_types:bind({Id, proper_types:integer(0, 13)}, fun({I, C}) -> raw(3, 0, I, <<C:32>>) end, false),
       proper_types:bind({Id, Bytes}, fun({I, B}) -> raw(9, 4, I, B) end, false),
       proper_types:bind({proper_types:integer(10, 255), Id, Bytes},
                         fun({T, I, B}) -> raw(T, 0, I, B) end, false)]).

data_frame(Id, Bytes) ->
    proper_types:bind({Id, Bytes, proper_types:integer(0, 20), proper_types:bool()},
                      fun({I, B, Pad, true}) -> raw(0, 8, I, <<Pad, B/binary, (binary:copy(<<0>>, Pad))/binary>>);
                         ({I, B, _Pad, false}) -> raw(0, 1, I, B)
                      end, false).

%% What the encoders write is parsed back to what they were given.
prop_encoders_round_trip() ->
    Id = proper_types:integer(1, 16#7fffffff),
    proper:forall(
      proper_types:union(
        [{ping, proper_types:binary(8)},
         {goaway, proper_types:integer(0, 16#7fffffff), proper_types:integer(0, 13), proper_types:binary()},
         {window_update, proper_types:integer(0, 16#7fffffff), proper_types:integer(1, 16#7fffffff)},
         {data, Id, proper_types:binary(), proper_types:bool()},
         {headers, Id, proper_types:binary(), proper_types:bool(), proper_types:integer(16384, 20000)}]),
      fun({ping, O}) ->
              all_frames(iolist_to_binary(consult_h2:ping(O))) =:= [{ping, O}];
         ({goaway, L, C, D}) ->
              [{goaway, L, Code, D}] = all_frames(iolist_to_binary(consult_h2:goaway(L, name(C), D))),
              consult_h2:error_code(Code) =:= C;
         ({window_update, I, Inc}) ->
              all_frames(iolist_to_binary(consult_h2:window_update(I, Inc))) =:= [{window_update, I, Inc}];
         ({data, I, B, Fin}) ->
              all_frames(iolist_to_binary(consult_h2:data(I, B, Fin))) =:= [{data, I, Fin, B, byte_size(B)}];
         ({headers, I, B, Fin, Max}) ->
              [{headers, I, Fin, _, _} | _] = Frames =
                  all_frames_max(iolist_to_binary(consult_h2:headers(I, B, Fin, Max)), Max),
              iolist_to_binary([element(tuple_size(F), F) || F <- Frames]) =:= B
      end).

all_frames_max(<<>>, _Max) -> [];
all_frames_max(Bin, Max) ->
    {ok, F, Rest} = consult_h2:parse(Bin, Max),
    [F | all_frames_max(Rest, Max)].

name(C) -> element(2, lists:keyfind(C, 1, [{consult_h2:error_code(N), N} || N <- codes()])).

codes() ->
    [no_error, protocol_error, internal_error, flow_control_error, settings_timeout, stream_closed,
     frame_size_error, refused_stream, cancel, compression_error, connect_error, enhance_your_calm,
     inadequate_security, http_1_1_required].

%% Arbitrary bytes: frames, more, or a connection error; never an exception.
prop_random_bytes_never_crash() ->
    proper:forall(proper_types:union([proper_types:binary(),
                                      proper_types:bind({proper_types:integer(0, 40), proper_types:integer(0, 255),
                                                         proper_types:byte(), proper_types:integer(0, 7), proper_types:binary()},
                                                        fun({L, T, F, I, P}) -> <<L:24, T, F, 0:1, I:31, P/binary>> end, false)]),
                  fun(Bin) -> parse_all(Bin) end).

parse_all(Bin) ->
    case parse(Bin) of
        {ok, _, Rest} when byte_size(Rest) < byte_size(Bin) -> parse_all(Rest);
        more -> true;
        {error, {connection_error, _, _}} -> true
    end.
