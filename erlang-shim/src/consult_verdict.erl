%% The filter_packet hook: hands consult traffic to the routing sidecar and
%% applies its verdict (pass / rewrite / drop / reject, plus extra stanzas),
%% or the failure policy when no verdict comes. Also routes the stanzas the
%% sidecar injects on its own. Hook registered by mod_consult.
-module(consult_verdict).

-export([filter_packet/1, route_injected/1, new_failure_log/0]).

-include("xmpp.hrl").
-include("logger.hrl").

-define(FAILURE_LOG, {mod_consult, failure_log}).
-define(FAILURE_LOG_EVERY, 10000).  % ms between two warnings about sidecar failures

-spec filter_packet(stanza() | drop) -> stanza() | drop.
filter_packet(#message{type = error} = Pkt) ->
    Pkt;
filter_packet(#message{from = From} = Pkt0) ->
    %% A remote server cannot dictate what our clients get written either.
    Pkt = case ejabberd_router:is_my_host(From#jid.lserver) of
              true -> Pkt0;
              false -> consult_stanza:strip_raw(Pkt0)
          end,
    case xmpp:get_meta(Pkt, consult_injected, false) of
        true -> Pkt;
        false ->
            %% Decided before any encoding: most traffic is not ours and must stay cheap.
            case is_relevant(Pkt, wire_type(Pkt)) of
                true -> ask_sidecar(Pkt, raw_element(Pkt));
                false -> Pkt
            end
    end;
filter_packet(Pkt) ->
    Pkt.

%% The client's element with the server-checked from/to, or the record encoded.
raw_element(#message{from = From, to = To} = Pkt) ->
    case xmpp:get_meta(Pkt, consult_raw, undefined) of
        #xmlel{attrs = Attrs} = El ->
            Attrs1 = lists:keydelete(<<"to">>, 1, lists:keydelete(<<"from">>, 1, Attrs)),
            El#xmlel{attrs = [{<<"from">>, jid:encode(From)}, {<<"to">>, jid:encode(To)} | Attrs1]};
        undefined ->
            xmpp:encode(Pkt)
    end.

%% The type the client wrote (ejabberd's record only knows the standard ones).
wire_type(#message{type = Type} = Pkt) ->
    case xmpp:get_meta(Pkt, consult_raw, undefined) of
        #xmlel{} = El -> fxml:get_tag_attr_s(<<"type">>, El);
        undefined -> atom_to_binary(Type, utf8)
    end.

is_relevant(#message{from = From, to = To}, Type) ->
    case Type of
        <<"consult">> -> true;
        <<"readmark">> ->
            consult_grpc:watched(shop, bare(To)) orelse consult_grpc:watched(agent, bare(To))
                orelse consult_grpc:watched(agent, bare(From));
        _ -> consult_grpc:watched(shop, bare(To))
    end.

bare(Jid) -> consult_stanza:bare(Jid).

ask_sidecar(#message{from = From, to = To} = Pkt, Raw) ->
    #{timeout := Timeout, failure_policy := Policy} = consult_options:settings(From#jid.lserver, To#jid.lserver),
    Xml = consult_timing:time(to_xml, fun() -> fxml:element_to_binary(Raw) end),
    case consult_timing:time(round_trip, fun() -> consult_grpc:filter(To#jid.lserver, target(To), Xml, Timeout) end) of
        {ok, Verdict} -> consult_timing:time(apply, fun() -> apply_verdict(Verdict, Pkt, Raw) end);
        {error, Reason} -> sidecar_failed(Reason, Policy, Pkt, Raw)
    end.

%% Only the sidecar that owns a shop may decide what is addressed to it;
%% anything else needs no shop's state and may go to any sidecar.
target(To) ->
    Bare = bare(To),
    case consult_grpc:watched(shop, Bare) of
        true -> Bare;
        false -> any
    end.

apply_verdict(#{action := Action, extra := Extra} = Verdict, Pkt, Raw) ->
    lists:foreach(fun route_stanza/1, Extra),
    case Action of
        pass -> consult_stanza:deliver_as(Pkt, Raw);
        rewrite ->
            case rewritten(Verdict, Raw) of
                {ok, Pkt1, El} -> consult_stanza:deliver_as(Pkt1, El);
                error -> bounce(Pkt, Raw, xmpp:err_internal_server_error(
                                            <<"The consult service produced an invalid message">>, lang(Pkt)))
            end;
        drop -> drop;
        reject -> bounce(Pkt, Raw, stanza_error(maps:get(error, Verdict), Pkt));
        Other ->
            ?WARNING_MSG("consult: unknown verdict action ~p", [Other]),
            bounce(Pkt, Raw, xmpp:err_internal_server_error(<<"Unknown consult verdict">>, lang(Pkt)))
    end.

%% A structured rewrite (attributes, no stanza) keeps the children of the
%% element the shim holds: the sidecar sends one only when they are unchanged.
rewritten(#{stanza := <<>>, attributes := [_ | _] = Attrs}, Raw) ->
    decode_element(Raw#xmlel{attrs = Attrs});
rewritten(#{stanza := Xml}, _Raw) ->
    decode(Xml).

%% Injected stanzas carry consult_injected so filter_packet lets them through
%% untouched (routing them re-enters filter_packet at once). A stanza without
%% from (the mstat ack) comes from the server itself.
route_stanza({ack, Fields}) ->
    route_element(decode_element(consult_stanza:ack_element(Fields)));
route_stanza(Xml) ->
    route_element(decode(Xml)).

route_element({ok, Pkt, El}) ->
    Pkt1 = case xmpp:get_from(Pkt) of
               undefined -> xmpp:set_from(Pkt, jid:make((xmpp:get_to(Pkt))#jid.lserver));
               _ -> Pkt
           end,
    ejabberd_router:route(xmpp:put_meta(consult_stanza:deliver_as(Pkt1, El), consult_injected, true));
route_element(error) ->
    ok.

%% Stanzas the sidecar sends on its own (timers, queue, admin actions): the
%% connections' on_inject.
-spec route_injected([binary()]) -> ok.
route_injected(Stanzas) ->
    lists:foreach(fun route_stanza/1, Stanzas).

decode(Xml) ->
    case fxml_stream:parse_element(Xml) of
        #xmlel{} = El ->
            decode_element(El);
        {error, Why} ->
            ?WARNING_MSG("consult: sidecar sent malformed XML (~p): ~ts", [Why, Xml]),
            error
    end.

decode_element(El) ->
    try xmpp:decode(El, ?NS_CLIENT, [ignore_els]) of
        Pkt ->
            case xmpp:get_to(Pkt) of
                undefined ->
                    ?WARNING_MSG("consult: sidecar stanza without to: ~ts", [fxml:element_to_binary(El)]),
                    error;
                _ -> {ok, Pkt, El}
            end
    catch _:{xmpp_codec, Why} ->
            ?WARNING_MSG("consult: sidecar stanza rejected by the codec: ~ts", [xmpp:format_error(Why)]),
            error
    end.

sidecar_failed(Reason, pass, Pkt, _Raw) ->
    failure_warning(Reason, "delivered unrouted (failure_policy: pass)", Pkt),
    Pkt;
sidecar_failed(Reason, reject, #message{body = []}, _Raw) ->
    %% Typing notifications and the like: nothing worth an error.
    ?DEBUG("consult: sidecar ~p, dropping a message without body", [Reason]),
    drop;
sidecar_failed(no_owner, reject, #message{to = To} = Pkt, Raw) ->
    %% A takeover takes seconds: wait, as the sidecar itself says for a shop it does not own.
    failure_warning(no_owner, "bounced with service-unavailable", Pkt),
    Err = xmpp:err_service_unavailable(
            <<"No consult sidecar owns ", (bare(To))/binary, " right now; your message was not "
              "delivered. Please try again shortly.">>, lang(Pkt)),
    bounce(Pkt, Raw, Err#stanza_error{type = wait});
sidecar_failed(Reason, reject, Pkt, Raw) ->
    failure_warning(Reason, "bounced with service-unavailable", Pkt),
    forget_kept_copy(Reason, Pkt, Raw),
    bounce(Pkt, Raw, xmpp:err_service_unavailable(
                  <<"The customer-service router is unavailable; your message was not "
                    "delivered. Please try again shortly.">>, lang(Pkt))).

%% A stanza that timed out, or whose connection went down (or was not up), may
%% have been decided and kept by the sidecar all the same: the visitor is told
%% it was not delivered, so no kept copy from before now may reach the agent.
forget_kept_copy(Reason, #message{from = From, to = To}, Raw) when Reason =:= timeout; Reason =:= unavailable ->
    case fxml:get_subtag(Raw, <<"body">>) of
        #xmlel{} = Body ->
            consult_inject_keys:bounced(bare(To), bare(From), fxml:get_tag_attr_s(<<"id">>, Body));
        false -> ok
    end;
forget_kept_copy(_Reason, _Pkt, _Raw) ->
    ok.

%% While the sidecar is down every consult message fails: one warning per
%% ?FAILURE_LOG_EVERY ms, counting the failures it did not log. Callers are
%% many c2s processes, hence atomics: slot 1 is when the next warning may be
%% logged (monotonic ms), slot 2 the failures since the last one.
-spec new_failure_log() -> ok.
new_failure_log() ->
    case persistent_term:get(?FAILURE_LOG, undefined) of
        undefined ->
            Ref = atomics:new(2, []),
            atomics:put(Ref, 1, erlang:monotonic_time(millisecond)),
            persistent_term:put(?FAILURE_LOG, Ref);
        _ ->
            ok
    end.

failure_warning(Reason, What, #message{from = From, to = To}) ->
    Ref = persistent_term:get(?FAILURE_LOG),
    Now = erlang:monotonic_time(millisecond),
    Next = atomics:get(Ref, 1),
    case Now >= Next andalso atomics:compare_exchange(Ref, 1, Next, Now + ?FAILURE_LOG_EVERY) =:= ok of
        true ->
            More = case atomics:exchange(Ref, 2, 0) of
                       0 -> "";
                       N -> io_lib:format(" (and ~b more failed since the previous warning)", [N])
                   end,
            ?WARNING_MSG("consult: ~ts: a message from ~ts to ~ts was ~ts~ts",
                         [failure_text(Reason, To), jid:encode(From), jid:encode(To), What, More]);
        false ->
            atomics:add(Ref, 2, 1)
    end.

failure_text(no_owner, To) -> ["no consult sidecar owns ", bare(To), " right now"];
failure_text(Reason, _To) -> io_lib:format("sidecar ~p", [Reason]).

%% The error goes back with the sender's own element (body id and all), so the
%% client can tell which message failed.
bounce(#message{from = From, to = To} = Pkt, #xmlel{attrs = Attrs, children = Children} = Raw, Err) ->
    Kept = [A || {K, _} = A <- Attrs, not lists:member(K, [<<"from">>, <<"to">>, <<"type">>])],
    ErrEl = Raw#xmlel{attrs = [{<<"from">>, jid:encode(To)}, {<<"to">>, jid:encode(From)},
                               {<<"type">>, <<"error">>} | Kept],
                      children = Children ++ [xmpp:encode(Err, ?NS_CLIENT)]},
    ErrPkt = xmpp:make_error(Pkt, Err),
    ejabberd_router:route(xmpp:put_meta(xmpp:put_meta(ErrPkt, consult_deliver, ErrEl),
                                        consult_injected, true)),  % errors are never stored
    drop.

stanza_error(#{condition := Cond, type := Type, text := Text}, Pkt) ->
    #stanza_error{type = error_type(Type), reason = error_condition(Cond),
                  text = xmpp:mk_text(Text, lang(Pkt))};
stanza_error(_, Pkt) ->
    xmpp:err_internal_server_error(<<"Rejected by the consult service">>, lang(Pkt)).

error_type(<<"modify">>) -> modify;
error_type(<<"auth">>) -> auth;
error_type(<<"wait">>) -> wait;
error_type(_) -> cancel.

%% Only RFC 6120 conditions the codec knows; anything else is undefined-condition.
error_condition(Cond) ->
    Known = [<<"bad-request">>, <<"conflict">>, <<"feature-not-implemented">>, <<"forbidden">>,
             <<"internal-server-error">>, <<"item-not-found">>, <<"jid-malformed">>,
             <<"not-acceptable">>, <<"not-allowed">>, <<"not-authorized">>,
             <<"policy-violation">>, <<"recipient-unavailable">>, <<"remote-server-not-found">>,
             <<"resource-constraint">>, <<"service-unavailable">>, <<"undefined-condition">>,
             <<"unexpected-request">>],
    case lists:member(Cond, Known) of
        true -> binary_to_atom(Cond, utf8);
        false -> 'undefined-condition'
    end.

lang(Pkt) -> xmpp:get_lang(Pkt).
