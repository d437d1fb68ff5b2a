%% EUnit tests for consult_pb, the hand-written codec of
%% proto/consult/v1/filter.proto. Run with `make -C erlang-shim eunit`.
%%
%% Golden bytes come from ts-proto (src/gen/consult/v1/filter.ts, the
%% sidecar's codec); test/e2e/shim-grpc-client.test.ts checks the same against the live
%% TypeScript encoder. The round trips use a small wire-format encoder and
%% parser written here, independent of consult_pb's own.
%%
%% The PropEr properties are called without proper.hrl (Debian ships the
%% header only in erlang-proper-dev); without PropEr they fail.
-module(consult_pb_tests).

-include_lib("eunit/include/eunit.hrl").

%% For proper:quickcheck/2 (via ?MODULE:Name()).
-export([prop_verdict_round_trip/0, prop_inject_round_trip/0,
         prop_filter_request_round_trip/0, prop_inject_ack_round_trip/0,
         prop_watch_round_trip/0, prop_hello_round_trip/0, prop_cluster_event_round_trip/0,
         prop_peek_agrees_with_decode/0]).

-define(U64_MAX, 16#FFFFFFFFFFFFFFFF).

%%% Golden bytes (ts-proto)

filter_request_with_deadline_test() ->
    Req = #{seq => 300, hook => filter_packet, host => <<"localhost">>,
            stanza => <<"<message/>">>, deadline_ms => 1767225600123},
    ?assertEqual(hex("08AC0210011A096C6F63616C686F7374220A3C6D6573736167652F3E28FBD0EAB6B733"),
                 iolist_to_binary(consult_pb:encode_filter_request(Req))),
    ?assertEqual(hex("0A2308AC0210011A096C6F63616C686F7374220A3C6D6573736167652F3E28FBD0EAB6B733"),
                 iolist_to_binary(consult_pb:encode_shim_message({filter, Req}))).

filter_request_deadline_zero_or_absent_is_omitted_test() ->
    Req = #{seq => 1, hook => filter_packet, host => <<"h">>, stanza => <<"<m/>">>},
    Golden = hex("080110011A016822043C6D2F3E"),
    ?assertEqual(Golden, iolist_to_binary(consult_pb:encode_filter_request(Req))),
    ?assertEqual(Golden, iolist_to_binary(consult_pb:encode_filter_request(Req#{deadline_ms => 0}))).

inject_with_id_test() ->
    ?assertEqual({inject, #{stanzas => [<<"<m1/>">>, <<"<m2/>">>], id => 7}},
                 consult_pb:decode_sidecar_message(hex("1A100A053C6D312F3E0A053C6D322F3E1007"))),
    ?assertEqual({inject, #{stanzas => [], id => ?U64_MAX}},
                 consult_pb:decode_sidecar_message(hex("1A0B10FFFFFFFFFFFFFFFFFF01"))).

inject_without_id_test() ->
    %% Before the id existed, and id 0 now: no ack wanted.
    ?assertEqual({inject, #{stanzas => [<<"<m1/>">>], id => 0}},
                 consult_pb:decode_sidecar_message(hex("1A070A053C6D312F3E"))),
    ?assertEqual({inject, #{stanzas => [], id => 0}}, consult_pb:decode_sidecar_message(hex("1A00"))).

%% Kept messages: one key per stanza, in order; field 3 (bytes).
inject_with_keys_test() ->
    Bin = iolist_to_binary(field(3, [field(1, <<"<m1/>">>), field(1, <<"<m2/>">>), varint_field(2, 9),
                                     field(3, <<"k1">>), field(3, <<"k2">>)])),
    ?assertEqual({inject, #{stanzas => [<<"<m1/>">>, <<"<m2/>">>], id => 9, keys => [<<"k1">>, <<"k2">>]}},
                 consult_pb:decode_sidecar_message(Bin)).

inject_ack_test() ->
    Enc = fun(Id) -> iolist_to_binary(consult_pb:encode_shim_message({inject_ack, #{id => Id}})) end,
    ?assertEqual(hex("22020807"), Enc(7)),
    ?assertEqual(hex("220308AC02"), Enc(300)),
    ?assertEqual(hex("2200"), Enc(0)),  %% a oneof member is written even when empty
    ?assertEqual(hex("220B08FFFFFFFFFFFFFFFFFF01"), Enc(?U64_MAX)).

hello_with_cluster_nodes_test() ->
    Hello = #{node => <<"n@h">>, hosts => [<<"localhost">>], shim_version => <<"0.2.0">>,
              cluster_nodes => [<<"n@h">>, <<"m@h">>]},
    ?assertEqual(hex("1A210A036E406812096C6F63616C686F73741A05302E322E3022036E406822036D4068"),
                 iolist_to_binary(consult_pb:encode_shim_message({hello, Hello}))).

cluster_event_test() ->
    Enc = fun(Up) -> iolist_to_binary(consult_pb:encode_shim_message({cluster, #{node => <<"m@h">>, up => Up}})) end,
    ?assertEqual(hex("2A070A036D40681001"), Enc(true)),
    ?assertEqual(hex("2A050A036D4068"), Enc(false)).  %% up = false is the default: omitted

watch_with_owned_test() ->
    ?assertEqual({watch, #{shops => [<<"s@x">>, <<"t@x">>], agents => [<<"a@x">>],
                           owned => [<<"t@x">>], sidecar => <<"sc-1">>}},
                 consult_pb:decode_sidecar_message(
                   hex("121A0A037340780A0374407812036140781A03744078220473632D31"))).

watch_with_owned_epochs_test() ->
    %% ts-proto packs the epochs (3 and 300).
    ?assertEqual({watch, #{shops => [<<"s@x">>], agents => [], owned => [<<"s@x">>, <<"t@x">>],
                           sidecar => <<"a">>, epochs => [3, 300]}},
                 consult_pb:decode_sidecar_message(hex("12170A037340781A037340781A037440782201612A0303AC02"))),
    %% Unpacked, one varint per field, is read the same.
    ?assertMatch({watch, #{epochs := [3, 300]}},
                 consult_pb:decode_sidecar_message(iolist_to_binary(field(2, [varint_field(5, 3), varint_field(5, 300)])))).

report_presence_test() ->
    ?assertEqual(report_presence, consult_pb:decode_sidecar_message(hex("2200"))).

erase_user_test() ->
    ?assertEqual({erase_user, #{id => 7, jid => <<"v@x">>, account => true}},
                 consult_pb:decode_sidecar_message(hex("2A09080712037640781801"))),
    %% account = false is the default: omitted on the wire
    ?assertEqual({erase_user, #{id => 7, jid => <<"v@x">>, account => false}},
                 consult_pb:decode_sidecar_message(hex("2A0708071203764078"))).

erase_user_ack_test() ->
    Enc = fun(Ack) -> iolist_to_binary(consult_pb:encode_shim_message({erase_user_ack, Ack})) end,
    ?assertEqual(hex("320B08071001180132036E4068"),
                 Enc(#{id => 7, offline => true, mam => true, account => false, node => <<"n@h">>})),
    ?assertEqual(hex("320908AC0220012A026E6F"),
                 Enc(#{id => 300, offline => false, mam => false, account => true, error => <<"no">>})),
    %% everything at its default: the oneof member is still written
    ?assertEqual(hex("3200"), Enc(#{id => 0, offline => false, mam => false, account => false})).

%%% Round trips

filter_request_round_trip_test() ->
    Req = #{seq => ?U64_MAX, hook => filter_packet, host => <<"例え.example"/utf8>>,
            stanza => [<<"<message>">>, "x", <<"</message>">>], deadline_ms => 1767225600123},
    ?assertEqual(#{1 => ?U64_MAX, 2 => 1, 3 => <<"例え.example"/utf8>>,
                   4 => <<"<message>x</message>">>, 5 => 1767225600123},
                 parse_map(consult_pb:encode_filter_request(Req))).

shim_message_round_trip_test() ->
    Ev = #{kind => presence_set, jid => <<"a@localhost/r">>, show => <<"away">>,
           priority => -129, status => <<"brb">>},
    ?assertEqual([{2, len, iolist_to_binary(consult_pb:encode_session_event(Ev))}],
                 parse(consult_pb:encode_shim_message({event, Ev}))),
    ?assertEqual(#{1 => 3, 2 => <<"a@localhost/r">>, 3 => <<"away">>, 4 => 257, 5 => <<"brb">>},
                 parse_map(consult_pb:encode_session_event(Ev))),
    [{4, len, Ack}] = parse(consult_pb:encode_shim_message({inject_ack, #{id => 123456789}})),
    ?assertEqual(#{1 => 123456789}, parse_map(Ack)).

%% The connection reads only a verdict's seq; its caller decodes the rest.
peek_reads_the_seq_and_leaves_the_rest_test() ->
    V = iolist_to_binary([field(3, <<"<m/>">>), varint_field(1, 300), <<(9 bsl 3 bor 1), 1:64>>,
                          <<(10 bsl 3 bor 5), 1:32>>, varint_field(11, 5), varint_field(1, 4294967297)]),
    ?assertEqual({verdict, 4294967297, V}, consult_pb:peek_sidecar_message(iolist_to_binary(field(1, V)))),
    ?assertEqual(4294967297, maps:get(seq, consult_pb:decode_verdict(V))),
    ?assertEqual({verdict, 0, <<>>}, consult_pb:peek_sidecar_message(iolist_to_binary(field(1, <<>>)))),
    Inject = iolist_to_binary(field(3, [field(1, <<"<m/>">>), varint_field(2, 5)])),
    ?assertEqual(consult_pb:decode_sidecar_message(Inject), consult_pb:peek_sidecar_message(Inject)),
    ?assertError({consult_pb, truncated}, consult_pb:peek_sidecar_message(iolist_to_binary(field(1, <<(3 bsl 3 bor 2), 9, "ab">>)))).

prop_peek_agrees_with_decode() ->
    proper:forall(verdict(), fun(V) ->
                                     Bin = encode_verdict(V),
                                     consult_pb:peek_sidecar_message(iolist_to_binary(field(1, Bin)))
                                         =:= {verdict, maps:get(seq, V), Bin}
                             end).

verdict_round_trip_test() ->
    V = #{seq => 4294967297, action => reject, stanza => <<"<x/>">>,
          error => #{condition => <<"item-not-found">>, type => <<"cancel">>,
                     text => <<"gone ✓"/utf8>>},
          extra => [<<"<a/>">>, <<>>, <<"<b/>">>]},
    ?assertEqual(V, consult_pb:decode_verdict(encode_verdict(V))),
    ?assertEqual({verdict, V}, consult_pb:decode_sidecar_message(iolist_to_binary(field(1, encode_verdict(V))))).

%% The structured verdict: the held stanza's new attributes in order, and
%% the further stanzas in wire order, an ack as its fields (ts-proto's bytes).
structured_verdict_test() ->
    ?assertEqual(#{seq => 5, action => rewrite, stanza => <<>>, error => undefined,
                   attributes => [{<<"to">>, <<"a@x">>}, {<<"type">>, <<"consult">>}, {<<"empty">>, <<>>}],
                   extra => [<<"<a/>">>, <<"<m/>">>,
                             {ack, #{to => <<"v@x/r">>, body_id => <<"b1">>, msec_times => <<"17">>}}]},
                 consult_pb:decode_verdict(hex("080510012A043C612F3E3202746F32036140783204747970653207636F6E73756C743205656D70747932003A060A043C6D2F3E3A11120F0A057640782F72120262311A023137"))),
    %% Long values, interleaved with other fields; a name left without its value gets an empty one.
    Long = binary:copy(<<"x">>, 200),
    ?assertEqual(#{seq => 7, action => pass, stanza => <<>>, error => undefined, extra => [],
                   attributes => [{<<"k">>, Long}, {<<"a">>, <<>>}]},
                 consult_pb:decode_verdict(iolist_to_binary([field(6, <<"k">>), varint_field(1, 7), field(6, Long),
                                                             field(6, <<"a">>)]))),
    %% An Extra without a member, or an Ack without fields: empty values, which the shim refuses to route.
    ?assertEqual(#{seq => 0, action => pass, stanza => <<>>, error => undefined,
                   extra => [<<>>, {ack, #{to => <<>>, body_id => <<>>, msec_times => <<>>}}]},
                 consult_pb:decode_verdict(iolist_to_binary([field(7, <<>>), field(7, field(2, <<>>))]))).

hello_lists_features_test() ->
    Hello = #{node => <<"n@h">>, hosts => [<<"localhost">>], shim_version => <<"0.2.0">>,
              cluster_nodes => [<<"n@h">>], features => [<<"structured-verdict">>]},
    ?assertEqual(hex("1A300A036E406812096C6F63616C686F73741A05302E322E3022036E40682A12737472756374757265642D76657264696374"),
                 iolist_to_binary(consult_pb:encode_shim_message({hello, Hello}))).

verdict_defaults_test() ->
    ?assertEqual(#{seq => 0, action => pass, stanza => <<>>, error => undefined, extra => []},
                 consult_pb:decode_verdict(<<>>)).

watch_round_trip_test() ->
    W = [field(1, <<"s@x">>), field(2, <<"a@x">>), field(1, <<"t@x">>), field(2, <<"b@x">>)],
    %% From a sidecar older than `owned`: it owns nothing.
    ?assertEqual({watch, #{shops => [<<"s@x">>, <<"t@x">>], agents => [<<"a@x">>, <<"b@x">>],
                           owned => [], sidecar => <<>>}},
                 consult_pb:decode_sidecar_message(iolist_to_binary(field(2, W)))),
    %% Fields in any order, repeated ones interleaved.
    W2 = [field(4, <<"one">>), field(3, <<"t@x">>), field(1, <<"t@x">>), field(3, <<"s@x">>),
          field(4, <<"two">>)],
    ?assertEqual({watch, #{shops => [<<"t@x">>], agents => [], owned => [<<"t@x">>, <<"s@x">>],
                           sidecar => <<"two">>}},
                 consult_pb:decode_sidecar_message(iolist_to_binary(field(2, W2)))).

oneof_last_member_wins_test() ->
    Bin = [field(1, encode_verdict(#{seq => 1, action => pass, stanza => <<>>, error => undefined,
                                      extra => []})),
           field(3, [field(1, <<"<m/>">>), varint_field(2, 5)])],
    ?assertEqual({inject, #{stanzas => [<<"<m/>">>], id => 5}},
                 consult_pb:decode_sidecar_message(iolist_to_binary(Bin))).

%%% Unknown and unexpected fields are skipped

unknown_fields_skipped_test() ->
    Unknown = [varint_field(6, 150), <<(7 bsl 3 bor 1), 1, 2, 3, 4, 5, 6, 7, 8>>,
               <<(8 bsl 3 bor 5), 1, 2, 3, 4>>, field(9, <<"AB">>)],
    Verdict = iolist_to_binary([varint_field(1, 7), Unknown, varint_field(2, 9)]),
    ?assertEqual(#{seq => 7, action => {unknown_action, 9}, stanza => <<>>, error => undefined,
                   extra => []},
                 consult_pb:decode_verdict(Verdict)),
    Inject = iolist_to_binary([Unknown, field(1, <<"<m/>">>), varint_field(2, 3), Unknown]),
    ?assertEqual({inject, #{stanzas => [<<"<m/>">>], id => 3}},
                 consult_pb:decode_sidecar_message(iolist_to_binary([Unknown, field(3, Inject)]))),
    %% An unknown oneof member (a newer sidecar) is not an error.
    Newer = iolist_to_binary(field(9, <<"future">>)),
    ?assertEqual({unknown, Newer}, consult_pb:decode_sidecar_message(Newer)),
    ?assertEqual({unknown, <<>>}, consult_pb:decode_sidecar_message(<<>>)).

wrong_wire_type_for_known_field_skipped_test() ->
    %% A member sent as a varint, an Inject id sent as bytes: skipped, like
    %% any other field consult_pb does not understand.
    ?assertMatch({unknown, _}, consult_pb:decode_sidecar_message(iolist_to_binary(varint_field(1, 1)))),
    ?assertMatch({unknown, _}, consult_pb:decode_sidecar_message(iolist_to_binary(varint_field(2, 1)))),
    ?assertEqual({inject, #{stanzas => [], id => 0}},
                 consult_pb:decode_sidecar_message(iolist_to_binary(field(3, field(2, <<7>>))))).

%%% Malformed input

malformed_test_() ->
    Cases = [{"truncated length-delimited field", <<16#0A, 5, "abc">>},
             {"length beyond the message", <<16#0A, 16#FF, 16#FF, 16#FF, 16#FF, 16#0F>>},
             {"varint without its last byte", <<16#08, 16#FF>>},
             {"key without its last byte", <<16#FF>>},
             {"varint longer than 10 bytes", <<16#08, (binary:copy(<<16#FF>>, 10))/binary, 1>>},
             {"truncated fixed64", <<(7 bsl 3 bor 1), 1, 2, 3>>},
             {"truncated fixed32", <<(7 bsl 3 bor 5), 1, 2, 3>>},
             {"wire type 3 (start group)", <<(7 bsl 3 bor 3)>>},
             {"wire type 4 (end group)", <<(7 bsl 3 bor 4)>>},
             {"wire type 6", <<(7 bsl 3 bor 6), 0>>},
             {"wire type 7", <<(7 bsl 3 bor 7), 0>>}],
    [{Name, [{"as a Verdict", ?_assertError({consult_pb, _}, consult_pb:decode_verdict(Bin))},
             {"as a SidecarMessage",
              ?_assertError({consult_pb, _}, consult_pb:decode_sidecar_message(Bin))},
             {"inside SidecarMessage.verdict",
              ?_assertError({consult_pb, _},
                            consult_pb:decode_sidecar_message(iolist_to_binary(field(1, Bin))))},
             {"inside SidecarMessage.inject",
              ?_assertError({consult_pb, _},
                            consult_pb:decode_sidecar_message(iolist_to_binary(field(3, Bin))))}]}
     || {Name, Bin} <- Cases].

%%% PropEr properties

proper_test_() ->
    consult_properties:tests(?MODULE, [prop_verdict_round_trip, prop_inject_round_trip, prop_filter_request_round_trip,
                                       prop_inject_ack_round_trip, prop_watch_round_trip, prop_hello_round_trip,
                                       prop_cluster_event_round_trip, prop_peek_agrees_with_decode],
                             500, 60).

%% ?FORALL(X, Type, Prop) is proper:forall(Type, fun(X) -> Prop end).
prop_verdict_round_trip() ->
    proper:forall(verdict(), fun(V) -> consult_pb:decode_verdict(encode_verdict(V)) =:= V end).

prop_inject_round_trip() ->
    proper:forall({proper_types:list(proper_types:binary()), uint64()},
                  fun({Stanzas, Id}) ->
                          Bin = field(3, [[field(1, S) || S <- Stanzas], varint_field(2, Id)]),
                          consult_pb:decode_sidecar_message(iolist_to_binary(Bin))
                              =:= {inject, #{stanzas => Stanzas, id => Id}}
                  end).

prop_filter_request_round_trip() ->
    proper:forall({uint64(), proper_types:binary(), proper_types:binary(), uint64()},
                  fun({Seq, Host, Stanza, Deadline}) ->
                          Req = #{seq => Seq, hook => filter_packet, host => Host,
                                  stanza => Stanza, deadline_ms => Deadline},
                          %% Defaults are omitted, the rest in field order.
                          Expected = [{N, X} || {N, X} <- [{1, Seq}, {2, 1}, {3, Host},
                                                           {4, Stanza}, {5, Deadline}],
                                                X =/= 0, X =/= <<>>],
                          [{N, X} || {N, _, X} <- parse(consult_pb:encode_filter_request(Req))]
                              =:= Expected
                  end).

prop_inject_ack_round_trip() ->
    proper:forall(uint64(),
                  fun(Id) ->
                          [{4, len, Ack}] =
                              parse(consult_pb:encode_shim_message({inject_ack, #{id => Id}})),
                          parse_map(Ack) =:= case Id of 0 -> #{}; _ -> #{1 => Id} end
                  end).

prop_watch_round_trip() ->
    Jids = proper_types:list(proper_types:binary()),
    proper:forall({Jids, Jids, Jids, proper_types:binary()},
                  fun({Shops, Agents, Owned, Id}) ->
                          W = [[field(1, S) || S <- Shops], [field(2, A) || A <- Agents],
                               [field(3, O) || O <- Owned], field(4, Id)],
                          consult_pb:decode_sidecar_message(iolist_to_binary(field(2, W)))
                              =:= {watch, #{shops => Shops, agents => Agents, owned => Owned,
                                            sidecar => Id}}
                  end).

prop_hello_round_trip() ->
    Strings = proper_types:list(proper_types:binary()),
    proper:forall({proper_types:binary(), Strings, proper_types:binary(), Strings},
                  fun({Node, Hosts, Version, Nodes}) ->
                          Hello = #{node => Node, hosts => Hosts, shim_version => Version,
                                    cluster_nodes => Nodes},
                          [{3, len, Bin}] = parse(consult_pb:encode_shim_message({hello, Hello})),
                          %% Empty strings are omitted unless they are list members.
                          Expected = [{1, Node} || Node =/= <<>>] ++ [{2, H} || H <- Hosts]
                              ++ [{3, Version} || Version =/= <<>>] ++ [{4, N} || N <- Nodes],
                          [{N, X} || {N, _, X} <- parse(Bin)] =:= Expected
                  end).

prop_cluster_event_round_trip() ->
    proper:forall({proper_types:binary(), proper_types:bool()},
                  fun({Node, Up}) ->
                          [{5, len, Bin}] =
                              parse(consult_pb:encode_shim_message({cluster, #{node => Node, up => Up}})),
                          parse_map(Bin) =:= maps:from_list([{1, Node} || Node =/= <<>>]
                                                            ++ [{2, 1} || Up])
                  end).

%% Small, 32-bit and full 64-bit values, so every varint length shows up.
uint64() ->
    proper_types:union([proper_types:integer(0, 300), proper_types:integer(0, 16#FFFFFFFF),
                        proper_types:integer(0, ?U64_MAX)]).

verdict() ->
    Action = proper_types:union([proper_types:elements([pass, rewrite, drop, reject]),
                                 {unknown_action, proper_types:integer(4, 16#7FFFFFFF)}]),
    Error = proper_types:union(
              [undefined,
               proper_types:bind({proper_types:binary(), proper_types:binary(), proper_types:binary()},
                                 fun({C, T, X}) -> #{condition => C, type => T, text => X} end,
                                 false)]),
    proper_types:bind({uint64(), Action, proper_types:binary(), Error,
                       proper_types:list(proper_types:binary())},
                      fun({Seq, A, S, E, Extra}) ->
                              #{seq => Seq, action => A, stanza => S, error => E, extra => Extra}
                      end, false).

%%% A wire-format encoder and parser independent of consult_pb

%% Writes every field, defaults included: valid proto3, and it checks that
%% the decoder does not depend on defaults being omitted.
encode_verdict(#{seq := Seq, action := Action, stanza := Stanza, error := Error, extra := Extra}) ->
    ActionN = case Action of
                  pass -> 0; rewrite -> 1; drop -> 2; reject -> 3;
                  {unknown_action, N} -> N
              end,
    ErrorField = case Error of
                     undefined -> [];
                     #{condition := C, type := T, text := X} ->
                         field(4, [field(1, C), field(2, T), field(3, X)])
                 end,
    iolist_to_binary([varint_field(1, Seq), varint_field(2, ActionN), field(3, Stanza),
                      ErrorField, [field(5, E) || E <- Extra]]).

field(N, Data) -> [varint(N bsl 3 bor 2), varint(iolist_size(Data)), Data].

varint_field(N, V) -> [varint(N bsl 3), varint(V)].

varint(N) when N < 128 -> <<N>>;
varint(N) -> <<1:1, (N band 127):7, (varint(N bsr 7))/binary>>.

%% [{Field, varint | len, Value}] for messages made of varint and LEN fields.
parse(IoData) -> parse_bin(iolist_to_binary(IoData)).

parse_bin(<<>>) ->
    [];
parse_bin(Bin) ->
    {Key, Rest} = read_varint(Bin),
    case Key band 7 of
        0 ->
            {V, Rest1} = read_varint(Rest),
            [{Key bsr 3, varint, V} | parse_bin(Rest1)];
        2 ->
            {Len, Rest1} = read_varint(Rest),
            <<V:Len/binary, Rest2/binary>> = Rest1,
            [{Key bsr 3, len, V} | parse_bin(Rest2)]
    end.

parse_map(IoData) -> maps:from_list([{N, V} || {N, _, V} <- parse(IoData)]).

read_varint(<<0:1, B:7, Rest/binary>>) -> {B, Rest};
read_varint(<<1:1, B:7, Rest/binary>>) ->
    {N, Rest1} = read_varint(Rest),
    {B bor (N bsl 7), Rest1}.

hex(String) -> binary:decode_hex(list_to_binary(String)).
