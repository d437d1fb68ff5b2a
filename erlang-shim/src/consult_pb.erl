%% Hand-written protobuf codec for proto/consult/v1/filter.proto (Debian has
%% no gpb). Encoding omits proto3 defaults and writes fields in number order,
%% like ts-proto, so both sides produce the same bytes. Decoding skips unknown
%% fields of every wire type and raises error({consult_pb, _}) on malformed
%% input.
-module(consult_pb).

-export([encode_shim_message/1, encode_filter_request/1, encode_session_event/1,
         decode_sidecar_message/1, peek_sidecar_message/1, decode_verdict/1]).
-export_type([filter_request/0, session_event/0, hello/0, inject_ack/0, cluster_event/0,
              verdict/0, ack/0, action/0, inject/0, watch/0, erase_user/0, erase_user_ack/0]).

%% deadline_ms: Unix time in ms after which the shim stops waiting (0 or
%% absent: unknown, not sent).
-type filter_request() :: #{seq := non_neg_integer(), hook := filter_packet,
                            host := binary(), stanza := iodata(),
                            deadline_ms => non_neg_integer()}.
-type session_event() :: #{kind := session_open | session_close | presence_set | presence_unset,
                           jid := binary(), show => binary(), priority => integer(),
                           status => binary()}.
%% features: what this shim reads beyond the first contract ("structured-verdict").
-type hello() :: #{node := binary(), hosts := [binary()], shim_version := binary(),
                   cluster_nodes => [binary()], features => [binary()]}.
-type inject_ack() :: #{id := non_neg_integer()}.
-type cluster_event() :: #{node := binary(), up := boolean()}.
-type action() :: pass | rewrite | drop | reject | {unknown_action, non_neg_integer()}.
%% attributes (present when the sidecar sent some): a rewrite of the held
%% stanza's attributes, its children kept. extra: the further stanzas in wire
%% order, as XML or as the fields of an mstat ack the shim writes itself.
-type verdict() :: #{seq := non_neg_integer(), action := action(), stanza := binary(),
                     error := undefined | #{condition := binary(), type := binary(),
                                            text := binary()},
                     extra := [binary() | {ack, ack()}],
                     attributes => [{binary(), binary()}]}.
-type ack() :: #{to := binary(), body_id := binary(), msec_times := binary()}.
%% id 0: the sidecar wants no InjectAck. keys (kept messages only, absent when
%% the Inject has none): one per stanza, in the same order.
-type inject() :: #{stanzas := [binary()], id := non_neg_integer(), keys => [binary()]}.
%% owned: the shops this sidecar decides now (the full list every time);
%% sidecar: its id, <<>> when it sent none.
-type watch() :: #{shops := [binary()], agents := [binary()], owned := [binary()],
                   sidecar := binary(), epochs => [non_neg_integer()]}.

%% Erasure of a user (bare JID); account: its account goes too.
-type erase_user() :: #{id := non_neg_integer(), jid := binary(), account := boolean()}.
%% What was erased; error: non-empty when something failed.
-type erase_user_ack() :: #{id := non_neg_integer(), offline := boolean(), mam := boolean(),
                            account := boolean(), error => binary(), node => binary()}.

%%% Encoding

-spec encode_shim_message({filter, filter_request()} | {event, session_event()}
                          | {hello, hello()} | {inject_ack, inject_ack()}
                          | {cluster, cluster_event()}
                          | {erase_user_ack, erase_user_ack()}) -> iodata().
encode_shim_message({filter, Req}) -> message(1, encode_filter_request(Req));
encode_shim_message({event, Ev}) -> message(2, encode_session_event(Ev));
encode_shim_message({hello, Hello}) -> message(3, encode_hello(Hello));
encode_shim_message({inject_ack, #{id := Id}}) -> message(4, uint(1, Id));
encode_shim_message({cluster, #{node := Node, up := Up}}) ->
    message(5, [bytes(1, Node), bool(2, Up)]);
encode_shim_message({erase_user_ack, #{id := Id, offline := Offline, mam := Mam, account := Account} = Ack}) ->
    message(6, [uint(1, Id), bool(2, Offline), bool(3, Mam), bool(4, Account),
                bytes(5, maps:get(error, Ack, <<>>)), bytes(6, maps:get(node, Ack, <<>>))]).

-spec encode_filter_request(filter_request()) -> iodata().
encode_filter_request(#{seq := Seq, hook := filter_packet, host := Host, stanza := Stanza} = Req) ->
    [uint(1, Seq), uint(2, 1), bytes(3, Host), bytes(4, Stanza),
     uint(5, maps:get(deadline_ms, Req, 0))].

-spec encode_session_event(session_event()) -> iodata().
encode_session_event(#{kind := Kind, jid := Jid} = Ev) ->
    [uint(1, kind_number(Kind)), bytes(2, Jid), bytes(3, maps:get(show, Ev, <<>>)),
     uint(4, zigzag(maps:get(priority, Ev, 0))), bytes(5, maps:get(status, Ev, <<>>))].

encode_hello(#{node := Node, hosts := Hosts, shim_version := Version} = Hello) ->
    [bytes(1, Node), [message(2, H) || H <- Hosts], bytes(3, Version),
     [message(4, N) || N <- maps:get(cluster_nodes, Hello, [])],
     [message(5, F) || F <- maps:get(features, Hello, [])]].

kind_number(session_open) -> 1;
kind_number(session_close) -> 2;
kind_number(presence_set) -> 3;
kind_number(presence_unset) -> 4.

%% sint32: small magnitudes of either sign stay short.
zigzag(N) when N >= 0 -> N bsl 1;
zigzag(N) -> ((-N) bsl 1) - 1.

bool(Field, true) -> uint(Field, 1);
bool(_Field, false) -> [].

%% Scalar fields are omitted at their default value (proto3).
uint(_Field, 0) -> [];
uint(Field, N) -> [varint(Field bsl 3), varint(N)].

bytes(Field, Data) ->
    case iolist_size(Data) of
        0 -> [];
        _ -> message(Field, Data)
    end.

%% A length-delimited field that is always present (oneof members, repeated).
message(Field, Data) ->
    [varint((Field bsl 3) bor 2), varint(iolist_size(Data)), Data].

varint(N) when N < 128 -> <<N>>;
varint(N) -> <<1:1, (N band 127):7, (varint(N bsr 7))/binary>>.

%%% Decoding

-spec decode_sidecar_message(binary()) ->
          {verdict, verdict()}
        | {watch, watch()}
        | {inject, inject()}
        | report_presence
        | {erase_user, erase_user()}
        | {unknown, binary()}.
decode_sidecar_message(Bin) ->
    decode_sidecar_fields(fields(Bin), Bin).

decode_sidecar_fields(Fields, Bin) ->
    %% For a oneof the last member on the wire wins.
    Fold = fun({1, V}, _) when is_binary(V) -> {verdict, decode_verdict(V)};
              ({2, V}, _) when is_binary(V) -> {watch, decode_watch(V)};
              ({3, V}, _) when is_binary(V) -> {inject, decode_inject(V)};
              ({4, V}, _) when is_binary(V) -> report_presence;
              ({5, V}, _) when is_binary(V) -> {erase_user, decode_erase_user(V)};
              (_, Acc) -> Acc
           end,
    lists:foldl(Fold, {unknown, Bin}, Fields).

%% As decode_sidecar_message/1, but a Verdict comes with only its seq read:
%% the connection process matches it to its caller, and the caller (one of
%% many processes) decodes the rest with decode_verdict/1.
-spec peek_sidecar_message(binary()) ->
          {verdict, non_neg_integer(), binary()}
        | {watch, watch()}
        | {inject, inject()}
        | report_presence
        | {erase_user, erase_user()}
        | {unknown, binary()}.
peek_sidecar_message(Bin) ->
    case fields(Bin) of
        [{1, V}] when is_binary(V) -> {verdict, verdict_seq(V, 0), V};
        Fields -> decode_sidecar_fields(Fields, Bin)
    end.

%% Field 1 (the last one on the wire wins); the others are only stepped over.
verdict_seq(<<>>, Seq) ->
    Seq;
verdict_seq(Bin, Seq) ->
    case next_field(Bin) of
        {1, {varint, N}, Rest} -> verdict_seq(Rest, N);
        {_, _, Rest} -> verdict_seq(Rest, Seq)
    end.

-spec decode_verdict(binary()) -> verdict().
decode_verdict(Bin) ->
    Empty = #{seq => 0, action => pass, stanza => <<>>, error => undefined, extra => []},
    Fields = fields(Bin),
    V = lists:foldl(fun verdict_field/2, Empty, Fields),
    V1 = V#{extra := lists:reverse(maps:get(extra, V))},
    case [B || {6, B} <- Fields, is_binary(B)] of
        [] -> V1;
        Flat -> V1#{attributes => pairs(Flat)}
    end.

verdict_field({1, {varint, N}}, V) -> V#{seq := N};
verdict_field({2, {varint, N}}, V) -> V#{action := action(N)};
verdict_field({3, B}, V) when is_binary(B) -> V#{stanza := B};
verdict_field({4, B}, V) when is_binary(B) -> V#{error := decode_stanza_error(B)};
verdict_field({5, B}, V = #{extra := Extra}) when is_binary(B) -> V#{extra := [B | Extra]};
verdict_field({7, B}, V = #{extra := Extra}) when is_binary(B) -> V#{extra := [decode_extra(B) | Extra]};
verdict_field(_, V) -> V.

action(0) -> pass;
action(1) -> rewrite;
action(2) -> drop;
action(3) -> reject;
action(N) -> {unknown_action, N}.

%% Verdict.attributes is name, value, name, value…; a name without its value
%% (a broken sidecar) gets an empty one.
pairs([Name, Value | Rest]) -> [{Name, Value} | pairs(Rest)];
pairs([Name]) -> [{Name, <<>>}];
pairs([]) -> [].

%% An Extra without a member is an empty stanza, which the shim logs and skips.
decode_extra(Bin) ->
    lists:foldl(fun({1, B}, _) when is_binary(B) -> B;
                   ({2, B}, _) when is_binary(B) -> {ack, decode_ack(B)};
                   (_, E) -> E
                end, <<>>, fields(Bin)).

decode_ack(Bin) ->
    lists:foldl(fun({1, B}, A) when is_binary(B) -> A#{to := B};
                   ({2, B}, A) when is_binary(B) -> A#{body_id := B};
                   ({3, B}, A) when is_binary(B) -> A#{msec_times := B};
                   (_, A) -> A
                end, #{to => <<>>, body_id => <<>>, msec_times => <<>>}, fields(Bin)).

decode_stanza_error(Bin) ->
    Empty = #{condition => <<>>, type => <<>>, text => <<>>},
    lists:foldl(fun({1, B}, E) when is_binary(B) -> E#{condition := B};
                   ({2, B}, E) when is_binary(B) -> E#{type := B};
                   ({3, B}, E) when is_binary(B) -> E#{text := B};
                   (_, E) -> E
                end, Empty, fields(Bin)).

decode_inject(Bin) ->
    {Stanzas, Id, Keys} =
        lists:foldl(fun({1, B}, {S, I, K}) when is_binary(B) -> {[B | S], I, K};
                       ({2, {varint, N}}, {S, _, K}) -> {S, N, K};
                       ({3, B}, {S, I, K}) when is_binary(B) -> {S, I, [B | K]};
                       (_, Acc) -> Acc
                    end, {[], 0, []}, fields(Bin)),
    Inject = #{stanzas => lists:reverse(Stanzas), id => Id},
    case Keys of
        [] -> Inject;
        _ -> Inject#{keys => lists:reverse(Keys)}
    end.

decode_erase_user(Bin) ->
    lists:foldl(fun({1, {varint, N}}, E) -> E#{id := N};
                   ({2, B}, E) when is_binary(B) -> E#{jid := B};
                   ({3, {varint, N}}, E) -> E#{account := N =/= 0};
                   (_, E) -> E
                end, #{id => 0, jid => <<>>, account => false}, fields(Bin)).

decode_watch(Bin) ->
    Field = fun({1, B}, Acc = #{shops := S}) when is_binary(B) -> Acc#{shops := [B | S]};
               ({2, B}, Acc = #{agents := A}) when is_binary(B) -> Acc#{agents := [B | A]};
               ({3, B}, Acc = #{owned := O}) when is_binary(B) -> Acc#{owned := [B | O]};
               ({4, B}, Acc) when is_binary(B) -> Acc#{sidecar := B};
               %% Repeated uint64: packed (proto3's default) or one varint per field.
               ({5, B}, Acc = #{epochs := E}) when is_binary(B) -> Acc#{epochs := lists:reverse(packed_varints(B), E)};
               ({5, {varint, N}}, Acc = #{epochs := E}) -> Acc#{epochs := [N | E]};
               (_, Acc) -> Acc
            end,
    #{shops := S, agents := A, owned := O, epochs := E} = W =
        lists:foldl(Field, #{shops => [], agents => [], owned => [], sidecar => <<>>, epochs => []}, fields(Bin)),
    W1 = maps:remove(epochs, W),
    W2 = W1#{shops := lists:reverse(S), agents := lists:reverse(A), owned := lists:reverse(O)},
    case E of
        [] -> W2;
        _ -> W2#{epochs => lists:reverse(E)}
    end.

packed_varints(<<>>) -> [];
packed_varints(Bin) ->
    {N, Rest} = read_varint(Bin),
    [N | packed_varints(Rest)].

%% Splits a message into [{FieldNumber, {varint, N} | binary() | {fixed, bitstring()}}].
fields(<<>>) ->
    [];
fields(Bin) ->
    {Field, Value, Rest} = next_field(Bin),
    [{Field, Value} | fields(Rest)].

%% The first field of a message and what follows it.
next_field(Bin) ->
    {Key, Rest} = read_varint(Bin),
    Field = Key bsr 3,
    case {Key band 7, Rest} of
        {0, _} ->
            {N, Rest1} = read_varint(Rest),
            {Field, {varint, N}, Rest1};
        {1, <<V:8/binary, Rest1/binary>>} ->
            {Field, {fixed, V}, Rest1};
        {2, _} ->
            {Len, Rest1} = read_varint(Rest),
            case Rest1 of
                <<V:Len/binary, Rest2/binary>> -> {Field, V, Rest2};
                _ -> error({consult_pb, truncated})
            end;
        {5, <<V:4/binary, Rest1/binary>>} ->
            {Field, {fixed, V}, Rest1};
        {WireType, _} when WireType =:= 1; WireType =:= 5 ->
            error({consult_pb, truncated});
        _ ->
            error({consult_pb, {bad_wire_type, Key band 7}})
    end.

read_varint(Bin) -> read_varint(Bin, 0, 0).

read_varint(<<1:1, B:7, Rest/binary>>, Shift, Acc) when Shift < 63 ->
    read_varint(Rest, Shift + 7, Acc bor (B bsl Shift));
read_varint(<<0:1, B:7, Rest/binary>>, Shift, Acc) ->
    {Acc bor (B bsl Shift), Rest};
read_varint(_, _, _) ->
    error({consult_pb, bad_varint}).
