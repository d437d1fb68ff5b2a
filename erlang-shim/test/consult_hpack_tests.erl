%% EUnit and PropEr tests for consult_hpack (RFC 7541). Run with
%% `make -C erlang-shim eunit`.
%%
%% The vectors are RFC 7541 Appendix C, header lists and dynamic tables
%% (entries and sizes) after each block. The properties use an encoder
%% written here (indexing, Huffman, size updates) whose Huffman code table is
%% read from the text of src/consult_hpack_huffman.hrl, so it shares no code
%% with the decoder it checks.
-module(consult_hpack_tests).

-include_lib("eunit/include/eunit.hrl").

-export([prop_literal_round_trip/0, prop_int_round_trip/0, prop_huffman_round_trip/0,
         prop_indexing_encoder_round_trip/0, prop_garbage_is_an_error_not_a_crash/0]).

%%% RFC 7541 Appendix C

%% C.2: one block each, from an empty table.
c2_literal_with_indexing_test() ->
    {ok, H, D} = consult_hpack:decode(hex("400a637573746f6d2d6b65790d637573746f6d2d686561646572"),
                                      consult_hpack:new()),
    ?assertEqual([{<<"custom-key">>, <<"custom-header">>}], H),
    ?assertEqual({[{<<"custom-key">>, <<"custom-header">>}], 55, 4096}, consult_hpack:table(D)).

c2_literal_without_indexing_test() ->
    {ok, H, D} = consult_hpack:decode(hex("040c2f73616d706c652f70617468"), consult_hpack:new()),
    ?assertEqual([{<<":path">>, <<"/sample/path">>}], H),
    ?assertEqual({[], 0, 4096}, consult_hpack:table(D)).

c2_literal_never_indexed_test() ->
    {ok, H, D} = consult_hpack:decode(hex("100870617373776f726406736563726574"), consult_hpack:new()),
    ?assertEqual([{<<"password">>, <<"secret">>}], H),
    ?assertEqual({[], 0, 4096}, consult_hpack:table(D)).

c2_indexed_test() ->
    {ok, H, D} = consult_hpack:decode(hex("82"), consult_hpack:new()),
    ?assertEqual([{<<":method">>, <<"GET">>}], H),
    ?assertEqual({[], 0, 4096}, consult_hpack:table(D)).

%% C.3 (plain strings) and C.4 (Huffman): the same three requests.
requests() ->
    [{[{<<":method">>, <<"GET">>}, {<<":scheme">>, <<"http">>}, {<<":path">>, <<"/">>},
       {<<":authority">>, <<"www.example.com">>}],
      [{<<":authority">>, <<"www.example.com">>}], 57},
     {[{<<":method">>, <<"GET">>}, {<<":scheme">>, <<"http">>}, {<<":path">>, <<"/">>},
       {<<":authority">>, <<"www.example.com">>}, {<<"cache-control">>, <<"no-cache">>}],
      [{<<"cache-control">>, <<"no-cache">>}, {<<":authority">>, <<"www.example.com">>}], 110},
     {[{<<":method">>, <<"GET">>}, {<<":scheme">>, <<"https">>}, {<<":path">>, <<"/index.html">>},
       {<<":authority">>, <<"www.example.com">>}, {<<"custom-key">>, <<"custom-value">>}],
      [{<<"custom-key">>, <<"custom-value">>}, {<<"cache-control">>, <<"no-cache">>},
       {<<":authority">>, <<"www.example.com">>}], 164}].

c3_requests_without_huffman_test() ->
    check_sequence(["828684410f7777772e6578616d706c652e636f6d",
                    "828684be58086e6f2d6361636865",
                    "828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565"],
                   requests(), 4096).

c4_requests_with_huffman_test() ->
    check_sequence(["828684418cf1e3c2e5f23a6ba0ab90f4ff",
                    "828684be5886a8eb10649cbf",
                    "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf"],
                   requests(), 4096).

%% C.5 (plain) and C.6 (Huffman): three responses with a 256-byte table, so
%% entries are evicted.
-define(DATE1, <<"Mon, 21 Oct 2013 20:13:21 GMT">>).
-define(DATE2, <<"Mon, 21 Oct 2013 20:13:22 GMT">>).
-define(LOCATION, <<"https://www.example.com">>).
-define(COOKIE, <<"foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1">>).

responses() ->
    [{[{<<":status">>, <<"302">>}, {<<"cache-control">>, <<"private">>}, {<<"date">>, ?DATE1},
       {<<"location">>, ?LOCATION}],
      [{<<"location">>, ?LOCATION}, {<<"date">>, ?DATE1}, {<<"cache-control">>, <<"private">>},
       {<<":status">>, <<"302">>}], 222},
     {[{<<":status">>, <<"307">>}, {<<"cache-control">>, <<"private">>}, {<<"date">>, ?DATE1},
       {<<"location">>, ?LOCATION}],
      [{<<":status">>, <<"307">>}, {<<"location">>, ?LOCATION}, {<<"date">>, ?DATE1},
       {<<"cache-control">>, <<"private">>}], 222},
     {[{<<":status">>, <<"200">>}, {<<"cache-control">>, <<"private">>}, {<<"date">>, ?DATE2},
       {<<"location">>, ?LOCATION}, {<<"content-encoding">>, <<"gzip">>},
       {<<"set-cookie">>, ?COOKIE}],
      [{<<"set-cookie">>, ?COOKIE}, {<<"content-encoding">>, <<"gzip">>}, {<<"date">>, ?DATE2}],
      215}].

c5_responses_without_huffman_test() ->
    check_sequence(["4803333032580770726976617465611d4d6f6e2c203231204f637420323031332032303a31333a"
                    "323120474d546e1768747470733a2f2f7777772e6578616d706c652e636f6d",
                    "4803333037c1c0bf",
                    "88c1611d4d6f6e2c203231204f637420323031332032303a31333a323220474d54c05a04677a69"
                    "707738666f6f3d4153444a4b48514b425a584f5157454f50495541585157454f49553b206d6178"
                    "2d6167653d333630303b2076657273696f6e3d31"],
                   responses(), 256).

c6_responses_with_huffman_test() ->
    check_sequence(["488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29ad"
                    "171863c78f0b97c8e9ae82ae43d3",
                    "4883640effc1c0bf",
                    "88c16196d07abe941054d444a8200595040b8166e084a62d1bffc05a839bd9ab77ad94e7821dd7f2"
                    "e6c7b335dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007"],
                   responses(), 256).

check_sequence(Blocks, Expected, TableSize) ->
    lists:foldl(
      fun({Hex, {Headers, Table, Size}}, D) ->
              {ok, H, D1} = consult_hpack:decode(hex(Hex), D),
              ?assertEqual(Headers, H),
              ?assertEqual({Table, Size, TableSize}, consult_hpack:table(D1)),
              D1
      end, consult_hpack:new(TableSize), lists:zip(Blocks, Expected)).

%%% Dynamic table size updates (4.2, 6.3)

size_update_evicts_test() ->
    {ok, _, D} = consult_hpack:decode(hex("400a637573746f6d2d6b65790d637573746f6d2d686561646572"),
                                      consult_hpack:new()),
    %% To 0 (empties the table), then back to 4096: both at the start of a block.
    {ok, [{<<":method">>, <<"GET">>}], D1} =
        consult_hpack:decode(<<16#20, (consult_hpack:encode_int(4096, 5, 1))/binary, 16#82>>, D),
    ?assertEqual({[], 0, 4096}, consult_hpack:table(D1)),
    %% To 60: the 55-byte entry stays; a second one evicts it.
    {ok, [], D2} = consult_hpack:decode(consult_hpack:encode_int(60, 5, 1), D),
    ?assertEqual({[{<<"custom-key">>, <<"custom-header">>}], 55, 60}, consult_hpack:table(D2)),
    {ok, _, D3} = consult_hpack:decode(hex("400361626303646566"), D2),
    ?assertEqual({[{<<"abc">>, <<"def">>}], 38, 60}, consult_hpack:table(D3)).

size_update_above_the_limit_test() ->
    Block = consult_hpack:encode_int(4097, 5, 1),
    ?assertEqual({error, {table_size_too_large, 4097}}, consult_hpack:decode(Block, consult_hpack:new())),
    ?assertEqual({error, {table_size_too_large, 300}},
                 consult_hpack:decode(consult_hpack:encode_int(300, 5, 1), consult_hpack:new(256))).

size_update_after_a_field_test() ->
    ?assertEqual({error, table_size_update_after_field},
                 consult_hpack:decode(<<16#82, 16#20>>, consult_hpack:new())).

entry_larger_than_the_table_empties_it_test() ->
    {ok, _, D} = consult_hpack:decode(hex("400a637573746f6d2d6b65790d637573746f6d2d686561646572"),
                                      consult_hpack:new(100)),
    Big = binary:copy(<<"v">>, 100),
    {ok, [{<<"k">>, Big}], D1} = consult_hpack:decode(<<16#40, 1, "k", 100, Big/binary>>, D),
    ?assertEqual({[], 0, 100}, consult_hpack:table(D1)).

%%% Bad input

bad_index_test_() ->
    New = consult_hpack:new(),
    {ok, _, One} = consult_hpack:decode(hex("400a637573746f6d2d6b65790d637573746f6d2d686561646572"), New),
    [?_assertEqual({error, {bad_index, 0}}, consult_hpack:decode(<<16#80>>, New)),
     ?_assertEqual({error, {bad_index, 62}}, consult_hpack:decode(<<16#be>>, New)),
     ?_assertMatch({ok, [{<<"custom-key">>, _}], _}, consult_hpack:decode(<<16#be>>, One)),
     ?_assertEqual({error, {bad_index, 63}}, consult_hpack:decode(<<16#bf>>, One)),
     %% An indexed name out of range, in every literal form.
     ?_assertEqual({error, {bad_index, 62}}, consult_hpack:decode(<<16#7e, 1, "v">>, New)),
     ?_assertEqual({error, {bad_index, 62}},
                   consult_hpack:decode(<<16#0f, 16#2f, 1, "v">>, New)),
     ?_assertEqual({error, {bad_index, 62}},
                   consult_hpack:decode(<<16#1f, 16#2f, 1, "v">>, New)),
     ?_assertEqual({error, {bad_index, 100000}},
                   consult_hpack:decode(consult_hpack:encode_int(100000, 7, 1), New))].

truncated_test_() ->
    New = consult_hpack:new(),
    [?_assertEqual({error, truncated_string}, consult_hpack:decode(<<16#40, 5, "abc">>, New)),
     ?_assertEqual({error, truncated_string}, consult_hpack:decode(<<16#40, 1, "a">>, New)),
     ?_assertEqual({error, truncated_string}, consult_hpack:decode(<<16#04, 16#85, 1>>, New)),
     ?_assertEqual({error, truncated_integer}, consult_hpack:decode(<<16#ff>>, New)),
     ?_assertEqual({error, truncated_integer}, consult_hpack:decode(<<16#ff, 16#80>>, New)),
     ?_assertEqual({error, integer_overflow},
                   consult_hpack:decode(<<16#ff, 16#ff, 16#ff, 16#ff, 16#ff, 16#ff, 16#0f>>, New))].

bad_huffman_test_() ->
    New = consult_hpack:new(),
    Lit = fun(Huff) -> <<16#00, 1, "k", 1:1, (byte_size(Huff)):7, Huff/binary>> end,
    %% 'a' is 00011 (5 bits): padding of 3 ones is right, of zeros is not.
    [?_assertEqual({ok, [{<<"k">>, <<"a">>}], New}, consult_hpack:decode(Lit(<<2#00011111>>), New)),
     ?_assertEqual({error, bad_huffman}, consult_hpack:decode(Lit(<<2#00011000>>), New)),
     %% Padding longer than 7 bits: a whole byte of ones after the code.
     ?_assertEqual({error, bad_huffman}, consult_hpack:decode(Lit(<<2#00011111, 16#ff>>), New)),
     %% EOS (30 ones) inside the string.
     ?_assertEqual({error, bad_huffman}, consult_hpack:decode(Lit(<<16#ff, 16#ff, 16#ff, 16#ff>>), New))].

header_list_size_limit_test() ->
    New = consult_hpack:new(),
    Block = <<16#40, 1, "k", 100, (binary:copy(<<"v">>, 100))/binary>>,  % 1 + 100 + 32 = 133
    ?assertMatch({ok, _, _}, consult_hpack:decode(Block, New, 133)),
    ?assertEqual({error, header_list_too_large}, consult_hpack:decode(Block, New, 132)),
    %% Indexes are small but name large fields: a table entry repeated past the limit.
    {ok, _, D} = consult_hpack:decode(Block, New),
    ?assertMatch({ok, _, _}, consult_hpack:decode(binary:copy(<<16#be>>, 10), D, 1330)),
    ?assertEqual({error, header_list_too_large},
                 consult_hpack:decode(binary:copy(<<16#be>>, 11), D, 1330)).

integer_examples_test() ->
    %% C.1: 10 and 1337 with a 5-bit prefix, 42 with 8 bits.
    ?assertEqual(<<2#01010>>, consult_hpack:encode_int(10, 5, 0)),
    ?assertEqual(<<31, 16#9a, 16#0a>>, consult_hpack:encode_int(1337, 5, 0)),
    ?assertEqual(<<42>>, consult_hpack:encode_int(42, 8, 0)),
    ?assertEqual({1337, <<"x">>}, consult_hpack:decode_int(<<31, 16#9a, 16#0a, "x">>, 5)).

%%% PropEr properties

proper_test_() ->
    consult_properties:tests(?MODULE, [prop_literal_round_trip, prop_int_round_trip, prop_huffman_round_trip, prop_indexing_encoder_round_trip, prop_garbage_is_an_error_not_a_crash],
                             300, 120).

%% Our own encoder (literals, never indexing) decodes to what it was given.
prop_literal_round_trip() ->
    proper:forall(headers(),
                  fun(Headers) ->
                          Block = iolist_to_binary(consult_hpack:encode(Headers)),
                          {ok, Headers, D} = consult_hpack:decode(Block, consult_hpack:new()),
                          consult_hpack:table(D) =:= {[], 0, 4096}
                  end).

prop_int_round_trip() ->
    proper:forall({proper_types:integer(0, 16#7fffffff), proper_types:integer(1, 8),
                   proper_types:integer(0, 255), proper_types:binary()},
                  fun({I, N, High, Tail}) ->
                          Enc = consult_hpack:encode_int(I, N, High bsr N),
                          consult_hpack:decode_int(<<Enc/binary, Tail/binary>>, N) =:= {I, Tail}
                  end).

prop_huffman_round_trip() ->
    Codes = huffman_codes(),
    proper:forall({proper_types:binary(), proper_types:binary()},
                  fun({Name, Value}) ->
                          Block = iolist_to_binary([16#00, huffman_string(Name, Codes),
                                                    huffman_string(Value, Codes)]),
                          consult_hpack:decode(Block, consult_hpack:new())
                              =:= {ok, [{Name, Value}], consult_hpack:new()}
                  end).

%% Blocks from a reference encoder that indexes, Huffman-codes and resizes
%% the table at random decode to the lists it was given, one after the other
%% on the same decoder, whose table matches the encoder's.
prop_indexing_encoder_round_trip() ->
    Codes = huffman_codes(),
    Op = proper_types:union([{headers, headers()},
                             {resize, proper_types:integer(0, 4096), headers()}]),
    proper:forall({proper_types:list(Op), proper_types:integer(0, 1 bsl 30)},
                  fun({Ops, Seed}) ->
                          rand:seed(exsss, {Seed, 7, 11}),
                          run_ops(Ops, consult_hpack:new(), {[], 4096}, Codes)
                  end).

run_ops([], _D, _Model, _Codes) ->
    true;
run_ops([Op | Ops], D, Model, Codes) ->
    {Update, Headers, Model1} =
        case Op of
            {headers, H} -> {[], H, Model};
            {resize, Max, H} -> {consult_hpack:encode_int(Max, 5, 1), H, model_evict(setelement(2, Model, Max))}
        end,
    {Fields, Model2} = lists:mapfoldl(fun(F, M) -> ref_encode(F, M, Codes) end, Model1, Headers),
    case consult_hpack:decode(iolist_to_binary([Update | Fields]), D) of
        {ok, Headers, D1} ->
            {Entries, _} = Model2,
            {Table, _, _} = consult_hpack:table(D1),
            Table =:= Entries andalso run_ops(Ops, D1, Model2, Codes);
        _ ->
            false
    end.

%% The model: {Entries (newest first), Max}.
ref_encode({Name, Value} = Field, {Entries, _} = M, Codes) ->
    Str = fun(S) ->
                  case rand:uniform(2) of
                      1 -> huffman_string(S, Codes);
                      2 -> [consult_hpack:encode_int(byte_size(S), 7, 0), S]
                  end
          end,
    case {index_of(Field, Entries), rand:uniform(3)} of
        {{ok, I}, R} when R < 3 ->
            {consult_hpack:encode_int(I, 7, 1), M};
        _ ->
            case rand:uniform(3) of
                1 -> {[consult_hpack:encode_int(0, 6, 1), Str(Name), Str(Value)], model_add(Field, M)};
                2 -> {[consult_hpack:encode_int(0, 4, 0), Str(Name), Str(Value)], M};
                3 -> {[consult_hpack:encode_int(0, 4, 1), Str(Name), Str(Value)], M}
            end
    end.

index_of(Field, Entries) ->
    case lists:search(fun({_, E}) -> E =:= Field end, lists:zip(lists:seq(1, length(Entries)), Entries)) of
        {value, {I, _}} -> {ok, 61 + I};
        false -> none
    end.

%% An entry larger than the whole table empties it and is not kept (4.4).
model_add({N, V}, {_Entries, Max}) when byte_size(N) + byte_size(V) + 32 > Max -> {[], Max};
model_add(F, {Entries, Max}) -> model_evict({[F | Entries], Max}).

model_evict({Entries, Max}) ->
    Size = lists:sum([byte_size(N) + byte_size(V) + 32 || {N, V} <- Entries]),
    case Size > Max of
        true -> model_evict({lists:droplast(Entries), Max});
        false -> {Entries, Max}
    end.

%% Whatever the bytes, an answer, never an exception.
prop_garbage_is_an_error_not_a_crash() ->
    proper:forall(proper_types:binary(),
                  fun(Bin) ->
                          case consult_hpack:decode(Bin, consult_hpack:new(), 65536) of
                              {ok, L, _} -> is_list(L);
                              {error, _} -> true
                          end
                  end).

headers() ->
    proper_types:list({proper_types:non_empty(proper_types:binary()), proper_types:binary()}).

%%% Huffman encoding, from the text of the generated table

huffman_codes() ->
    Hrl = filename:join([filename:dirname(code:which(consult_hpack)), "..", "src",
                         "consult_hpack_huffman.hrl"]),
    {ok, Text} = file:read_file(Hrl),
    {match, Matches} = re:run(Text, "huffman_symbol\\(<<(\\d+):(\\d+), Rest/bitstring>>\\) -> \\{(\\d+), Rest\\}",
                              [global, {capture, all_but_first, list}]),
    Codes = maps:from_list([{list_to_integer(S), {list_to_integer(C), list_to_integer(L)}}
                            || [C, L, S] <- Matches]),
    256 = map_size(Codes),
    Codes.

huffman_string(S, Codes) ->
    Bits = << <<(element(1, maps:get(B, Codes))):(element(2, maps:get(B, Codes)))>> || <<B>> <= S >>,
    Pad = (8 - bit_size(Bits) rem 8) rem 8,
    Bin = <<Bits/bitstring, ((1 bsl Pad) - 1):Pad>>,
    [consult_hpack:encode_int(byte_size(Bin), 7, 1), Bin].

hex(String) -> binary:decode_hex(list_to_binary(String)).
